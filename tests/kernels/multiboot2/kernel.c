/* hvboot's Multiboot2 test kernel (32-bit, freestanding): entered as the Multiboot2
 * specification 2.0 says (EAX magic, EBX the information, paging off), it prints every tag it
 * got over COM1 as "mb2: ..." lines that tests/test_multiboot2.py compares with what the host
 * set, then exits QEMU through isa-debug-exit (0x10: status 33). */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

/* The header: information request (required: command line, loader name, modules, basic
 * memory, memory map, load base; optional: framebuffer, SMBIOS, ACPI old and new), module
 * alignment, console flags (optional), end. */
__asm__(
    ".section .multiboot2, \"a\"\n"
    ".balign 8\n"
    "mb2_header:\n"
    ".long 0xe85250d6, 0, mb2_header_end - mb2_header\n"
    ".long -(0xe85250d6 + (mb2_header_end - mb2_header))\n"
    ".short 1, 0\n .long 8 + 6 * 4\n .long 1, 2, 3, 4, 6, 21\n .balign 8\n"
    ".short 1, 1\n .long 8 + 4 * 4\n .long 8, 13, 14, 15\n .balign 8\n"
    ".short 6, 0\n .long 8\n"
    ".short 4, 1\n .long 12\n .long 2\n .balign 8\n"
    ".short 0, 0\n .long 8\n"
    "mb2_header_end:\n"
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "  mov $stack_top, %esp\n"
    "  push %ebx\n"
    "  push %eax\n"
    "  call kmain\n"
    "1: hlt\n"
    "  jmp 1b\n"
    ".bss\n"
    ".balign 16\n"
    ".space 16384\n"
    "stack_top:\n"
    ".text\n");

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

#define COM1 0x3f8
static void putc(char c) {
    while (!(inb(COM1 + 5) & 0x20)) {
    }
    outb(COM1, (u8)c);
}
static void puts(const char *s) {
    while (*s) putc(*s++);
}
static void hex(u64 v) {
    puts("0x");
    for (int i = 60; i >= 0; i -= 4) putc("0123456789abcdef"[(v >> i) & 15]);
}
static void dec(u32 v) {
    char b[12];
    int n = 0;
    do b[n++] = (char)('0' + v % 10); while (v /= 10);
    while (n) putc(b[--n]);
}
static void sp(void) { putc(' '); }
static void nl(void) { putc('\n'); }

static u32 crc32(const u8 *p, u32 n) {
    u32 c = 0xffffffff;
    for (u32 i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320 & -(c & 1));
    }
    return ~c;
}
static u8 sum8(const u8 *p, u32 n) {
    u8 s = 0;
    for (u32 i = 0; i < n; i++) s = (u8)(s + p[i]);
    return s;
}

void kmain(u32 magic, u32 info) {
    u32 cr0, eflags;
    u16 cs, ds;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("pushf; pop %0" : "=r"(eflags));
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    __asm__ volatile("mov %%ds, %0" : "=r"(ds));
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 1);
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xc7);
    puts("mb2: magic "); hex(magic); puts(" info "); hex(info); nl();
    puts("mb2: cr0 "); hex(cr0); puts(" eflags "); hex(eflags); puts(" cs "); hex(cs);
    puts(" ds "); hex(ds); nl();
    if (magic != 0x36d76289) {
        puts("mb2: bad magic\n");
        outb(0xf4, 0x11);
        return;
    }
    /* The BIOS must stay re-enterable (Xen returns to real mode): the BDA's EBDA segment and
     * base memory size, and the segments of the INT 10h/13h/15h vectors, as the BIOS left them. */
    puts("mb2: bda ebda "); hex(*(volatile u16 *)0x40e); puts(" basemem ");
    dec(*(volatile u16 *)0x413); puts(" int10 "); hex(*(volatile u16 *)(0x10 * 4 + 2));
    puts(" int13 "); hex(*(volatile u16 *)(0x13 * 4 + 2)); puts(" int15 ");
    hex(*(volatile u16 *)(0x15 * 4 + 2)); nl();
    u32 total = *(u32 *)info;
    puts("mb2: total_size "); dec(total); nl();
    for (u32 at = 8; at + 8 <= total;) {
        const u8 *tag = (const u8 *)(info + at);
        u32 type = *(const u32 *)tag, size = *(const u32 *)(tag + 4);
        const u32 *w = (const u32 *)(tag + 8);
        switch (type) {
        case 0:
            puts("mb2: end\n");
            break;
        case 1: puts("mb2: cmdline "); puts((const char *)w); nl(); break;
        case 2: puts("mb2: loader "); puts((const char *)w); nl(); break;
        case 3:
            puts("mb2: module "); hex(w[0]); sp(); hex(w[1]); puts(" crc ");
            hex(crc32((const u8 *)w[0], w[1] - w[0])); sp(); puts((const char *)(w + 2)); nl();
            break;
        case 4: puts("mb2: basic "); dec(w[0]); sp(); dec(w[1]); nl(); break;
        case 6:
            for (u32 e = 16; e + w[0] <= size; e += w[0]) {
                const u8 *m = tag + e;
                puts("mb2: mmap "); hex(*(const u64 *)m); sp(); hex(*(const u64 *)(m + 8)); sp();
                dec(*(const u32 *)(m + 16)); nl();
            }
            break;
        case 8:
            puts("mb2: framebuffer "); hex(*(const u64 *)w); sp(); dec(w[2]); sp(); dec(w[3]);
            sp(); dec(tag[28]); nl();
            break;
        case 13: puts("mb2: smbios "); dec(tag[8]); sp(); dec(tag[9]); nl(); break;
        case 14:
            puts("mb2: rsdp-old sum "); dec(sum8((const u8 *)w, 20)); puts(" sig ");
            for (int i = 0; i < 8; i++) putc(((const char *)w)[i]);
            nl();
            break;
        case 15:
            puts("mb2: rsdp-new sum "); dec(sum8((const u8 *)w, 20)); puts(" extsum ");
            dec(sum8((const u8 *)w, w[5])); puts(" length "); dec(w[5]); nl();
            break;
        case 21: puts("mb2: loadbase "); hex(w[0]); nl(); break;
        default: puts("mb2: tag "); dec(type); puts(" size "); dec(size); nl(); break;
        }
        if (type == 0) break;
        at += (size + 7) & ~7u;
    }
    puts("mb2: done\n");
    outb(0xf4, 0x10);
}
