/* hvboot's Multiboot2 test kernel (freestanding): entered as the Multiboot2 specification 2.0
 * says (EAX magic, EBX the information, paging off), it prints every tag it got over COM1 as
 * "mb2: ..." lines that tests/test_multiboot2.py compares with what the host set, then exits
 * QEMU through isa-debug-exit (0x10: status 33).
 *
 * Built twice (build.sh): 32-bit as above, and with -DEFI64 as a 64-bit position-independent
 * kernel for the EFI boot-services path (§3.1.10, §3.1.9, §3.3 "EFI amd64 machine state with
 * boot services enabled"): its header adds the EFI boot services, EFI amd64 entry and
 * relocatable tags, it is entered at _start64 on the firmware's state, and it proves the boot
 * services still run by calling them with the handle and system table it got. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long uptr; /* a register: 32 or 64 bits */
#define AT(a) ((const u8 *)(uptr)(a))

/* The header: information request (required: command line, loader name, modules, basic
 * memory, memory map, load base; optional: VBE info, framebuffer, ELF-symbols, SMBIOS, ACPI
 * old and new), module
 * alignment, console flags (optional), end. */
__asm__(
    ".section .multiboot2, \"a\"\n"
    ".balign 8\n"
    "mb2_header:\n"
    ".long 0xe85250d6, 0, mb2_header_end - mb2_header\n"
    ".long -(0xe85250d6 + (mb2_header_end - mb2_header))\n"
    ".short 1, 0\n .long 8 + 6 * 4\n .long 1, 2, 3, 4, 6, 21\n .balign 8\n"
    ".short 1, 1\n .long 8 + 6 * 4\n .long 7, 8, 9, 13, 14, 15\n .balign 8\n"
    ".short 6, 0\n .long 8\n"
    ".short 4, 1\n .long 12\n .long 2\n .balign 8\n"
#ifdef FRAMEBUFFER
    /* A framebuffer (type 5, optional), the firmware's choice of mode (0 x 0, 32 bpp). */
    ".short 5, 1\n .long 20\n .long 0, 0, 32\n .balign 8\n"
#endif
#ifdef EFI64
    /* EFI boot services (type 7), EFI amd64 entry (type 9), relocatable (type 10): from 1 MiB
     * to 4 GiB, 2 MiB aligned, preferring high addresses, as Xen asks. */
    ".short 7, 0\n .long 8\n"
    ".short 9, 0\n .long 12\n .long _start64\n .balign 8\n"
    ".short 10, 0\n .long 24\n .long 0x100000, 0xffffffff, 0x200000, 2\n"
#endif
    ".short 0, 0\n .long 8\n"
    "mb2_header_end:\n"
    ".text\n"
#ifdef EFI64
    ".globl _start64\n"
    "_start64:\n"
    "  lea stack_top(%rip), %rsp\n"
    "  mov %eax, %edi\n"
    "  mov %ebx, %esi\n"
    "  call kmain\n"
#else
    ".globl _start\n"
    "_start:\n"
    "  mov $stack_top, %esp\n"
    "  push %ebx\n"
    "  push %eax\n"
    "  call kmain\n"
#endif
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

#ifdef EFI64
/* UEFI 2.10 §4.3 (system table), §4.4 (boot services), §9.1 (loaded image), x64 offsets. */
typedef uptr(__attribute__((ms_abi)) * handle_protocol_fn)(u64 handle, const void *guid,
                                                            void **iface);
typedef uptr(__attribute__((ms_abi)) * get_memory_map_fn)(uptr *size, void *map, uptr *key,
                                                           uptr *desc_size, u32 *desc_version);
typedef uptr(__attribute__((ms_abi)) * exit_boot_services_fn)(u64 handle, uptr key);
static u64 efi_st, efi_ih;
static u8 efi_map[64 << 10] __attribute__((aligned(8)));

static u64 at64(u64 a) { return *(const u64 *)AT(a); }

/* The boot services still run: the image handle is a loaded image of this system table, and
 * ExitBootServices with it succeeds (as Xen's EFI path ends). */
static void efi_checks(void) {
    static const u8 loaded_image_guid[16] = {0xa1, 0x31, 0x1b, 0x5b, 0x62, 0x95, 0xd2, 0x11,
                                             0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b};
    u64 bs = at64(efi_st + 96);
    puts("mb2: efi-sigs "); hex(at64(efi_st)); sp(); hex(at64(bs)); nl();
    void *li = 0;
    uptr s = ((handle_protocol_fn)at64(bs + 152))(efi_ih, loaded_image_guid, &li);
    puts("mb2: efi-image "); hex(s); sp(); hex(s == 0 ? at64((uptr)li + 16) : 0); nl();
    uptr status = 1, got = 1;
    for (int tries = 0; tries < 2 && status != 0; tries++) {
        uptr size = sizeof efi_map, key = 0, desc_size = 0;
        u32 version = 0;
        got = ((get_memory_map_fn)at64(bs + 56))(&size, efi_map, &key, &desc_size, &version);
        status = ((exit_boot_services_fn)at64(bs + 232))(efi_ih, key);
    }
    puts("mb2: efi-exit "); hex(got); sp(); hex(status); nl();
}
#endif

void kmain(u32 magic, u32 info) {
    uptr cr0, eflags;
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
#ifdef EFI64
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xc0000080));
    extern const u8 mb2_header[] __attribute__((visibility("hidden")));
    puts("mb2: efer "); hex((u64)hi << 32 | lo); puts(" header-at "); hex((uptr)mb2_header); nl();
#else
    /* The BIOS must stay re-enterable (Xen returns to real mode): the BDA's EBDA segment and
     * base memory size, and the segments of the INT 10h/13h/15h vectors, as the BIOS left them. */
    puts("mb2: bda ebda "); hex(*(volatile u16 *)0x40e); puts(" basemem ");
    dec(*(volatile u16 *)0x413); puts(" int10 "); hex(*(volatile u16 *)(0x10 * 4 + 2));
    puts(" int13 "); hex(*(volatile u16 *)(0x13 * 4 + 2)); puts(" int15 ");
    hex(*(volatile u16 *)(0x15 * 4 + 2)); nl();
#endif
    u32 total = *(const u32 *)AT(info);
    puts("mb2: total_size "); dec(total); nl();
    for (u32 at = 8; at + 8 <= total;) {
        const u8 *tag = AT(info + at);
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
            hex(crc32(AT(w[0]), w[1] - w[0])); sp(); puts((const char *)(w + 2)); nl();
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
        case 7: {
            /* VBE info: the mode, then the controller block (16..528) and the mode's (528..). */
            const u8 *mi = tag + 16 + 512;
            puts("mb2: vbe "); hex(*(const u16 *)(tag + 8)); sp();
            for (int i = 0; i < 4; i++) putc((char)tag[16 + i]);
            sp(); hex(*(const u32 *)(mi + 0x28)); sp(); dec(*(const u16 *)(mi + 0x12)); sp();
            dec(mi[0x19]); nl();
            break;
        }
        case 9: {
            /* ELF-symbols: num, entsize, shndx (u32 each, as GRUB writes them), the table;
             * each section's name, address, size, flags and the CRC-32 of its bytes there. */
            u32 num = w[0], ent = w[1];
            const u8 *tab = tag + 20;
            puts("mb2: elf-sections "); dec(num); sp(); dec(ent); sp(); dec(w[2]); nl();
#define SH(i, o32, o64) (ent == 64 ? *(const u64 *)(tab + (i) * ent + (o64)) \
                                   : *(const u32 *)(tab + (i) * ent + (o32)))
            u64 names = SH(w[2], 12, 16);
            for (u32 i = 0; i < num; i++) {
                u64 addr = SH(i, 12, 16), len = SH(i, 20, 32);
                u32 kind = *(const u32 *)(tab + i * ent + 4);
                if (kind == 0 || kind == 8 || len == 0 || addr == 0) continue;
                puts("mb2: section "); puts((const char *)AT(names + *(const u32 *)(tab + i * ent)));
                sp(); hex(addr); sp(); hex(len); sp(); hex(SH(i, 8, 8)); puts(" crc ");
                hex(crc32(AT(addr), (u32)len)); nl();
            }
            break;
        }
#ifdef EFI64
        case 12: efi_st = *(const u64 *)w; puts("mb2: efi-st "); hex(efi_st); nl(); break;
        case 18: puts("mb2: efi-bs\n"); break;
        case 20: efi_ih = *(const u64 *)w; puts("mb2: efi-ih "); hex(efi_ih); nl(); break;
#endif
        default: puts("mb2: tag "); dec(type); puts(" size "); dec(size); nl(); break;
        }
        if (type == 0) break;
        at += (size + 7) & ~7u;
    }
#ifdef EFI64
    if (efi_st && efi_ih) efi_checks();
#endif
    puts("mb2: done\n");
    outb(0xf4, 0x10);
}
