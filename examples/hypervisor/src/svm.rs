//! AMD SVM: a VMCB, nested page tables and the VMRUN loop.
//!
//! Written from the AMD64 Architecture Programmer's Manual, Vol. 2, chapter 15
//! ("Secure Virtual Machine") and appendix B ("Layout of VMCB"):
//!
//! - §15.4: SVM is enabled by EFER.SVME (bit 12); VMRUN is #UD without it.
//!   VM_CR (MSR C001_0114h) bit 4 SVMDIS set means firmware disabled SVM.
//! - §15.5: VMRUN takes the VMCB's physical address in RAX, saves host state
//!   in the page named by VM_HSAVE_PA (MSR C001_0117h) and loads the guest
//!   state. #VMEXIT restores the host's RAX, RSP, RIP, CR0/3/4, EFER, RFLAGS,
//!   GDTR/IDTR and ES/CS/SS/DS, and clears GIF; the other general-purpose
//!   registers are neither saved nor loaded, so [`run`] swaps them itself.
//! - §15.5.1: VMRUN fails (exit code VMEXIT_INVALID) unless the VMRUN intercept
//!   is set, the ASID is not 0, and the guest state is consistent: guest
//!   EFER.SVME = 1, long mode needs CR0.PG + CR0.PE + CR4.PAE, CS.L and CS.D
//!   not both set, DR6/DR7 upper halves zero, no reserved bits set.
//! - §15.25: nested paging. NP_ENABLE (VMCB 090h bit 0) makes the CPU
//!   translate guest-physical addresses through the tables at N_CR3 (VMCB
//!   0B0h), which have the same format as long-mode page tables; the walks
//!   are user-level accesses, so every entry needs U/S = 1. A failed
//!   translation exits with VMEXIT_NPF (400h), EXITINFO2 = the guest-physical
//!   address, EXITINFO1 = a page-fault error code. G_PAT (VMCB 668h) is the
//!   guest's PAT while nested paging is on.
//!
//! The VMCB layout used here (offsets from the start of the 4 KiB page):
//!
//! | offset | field |
//! |---|---|
//! | 00Ch | intercepts: bit 24 HLT, bit 31 shutdown |
//! | 010h | intercepts: bit 0 VMRUN, bit 1 VMMCALL |
//! | 058h | guest ASID (u32) |
//! | 05Ch | TLB_CONTROL (u8; 1 = flush all) |
//! | 070h / 078h / 080h | EXITCODE / EXITINFO1 / EXITINFO2 |
//! | 088h | EXITINTINFO |
//! | 090h | bit 0 NP_ENABLE |
//! | 0B0h | N_CR3 |
//! | 400h + 00h..40h | ES, CS, SS, DS: selector u16, attrib u16, limit u32, base u64 |
//! | 400h + 60h / 80h | GDTR / IDTR (limit at +4, base at +8) |
//! | 400h + 0CBh | CPL |
//! | 400h + 0D0h | EFER |
//! | 400h + 148h / 150h / 158h | CR4 / CR3 / CR0 |
//! | 400h + 160h / 168h | DR7 / DR6 |
//! | 400h + 170h / 178h | RFLAGS / RIP |
//! | 400h + 1D8h / 1F8h | RSP / RAX |
//! | 400h + 268h | G_PAT |
//!
//! Segment attributes are the descriptor's bits 40..47 (type, S, DPL, P) in
//! attrib bits 0..7 and bits 52..55 (AVL, L, D/B, G) in attrib bits 8..11.

use core::arch::global_asm;

use hvboot_api::cpu::{rdmsr, wrmsr, EFER_SVME, MSR_EFER};

use crate::frames::{Block, Frames, PAGE_SIZE};

/// VM_CR: SVM lock and disable bits.
pub const MSR_VM_CR: u32 = 0xC001_0114;
/// VM_CR.SVMDIS: firmware disabled SVM.
pub const VM_CR_SVMDIS: u64 = 1 << 4;
/// VM_HSAVE_PA: physical address of the host save area.
pub const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;

/// Exit codes (APM Vol. 2, appendix C).
pub mod exit {
    /// Exception intercepts: 40h + vector.
    pub const EXCP_BASE: u64 = 0x40;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// Shutdown (the guest triple-faulted).
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMRUN found invalid guest state (-1; QEMU reports it as 32-bit -1).
    pub const INVALID: u64 = u64::MAX;
}

// VMCB control area.
const INTERCEPT_MISC1: usize = 0x00c;
const INTERCEPT_MISC2: usize = 0x010;
const GUEST_ASID: usize = 0x058;
const TLB_CONTROL: usize = 0x05c;
const EXITCODE: usize = 0x070;
const EXITINFO1: usize = 0x078;
const EXITINFO2: usize = 0x080;
const EXITINTINFO: usize = 0x088;
const NP_CONTROL: usize = 0x090;
const N_CR3: usize = 0x0b0;
// VMCB state save area.
const SAVE: usize = 0x400;
const SEG_ES: usize = SAVE;
const SEG_CS: usize = SAVE + 0x10;
const SEG_SS: usize = SAVE + 0x20;
const SEG_DS: usize = SAVE + 0x30;
const SEG_GDTR: usize = SAVE + 0x60;
const SEG_IDTR: usize = SAVE + 0x80;
const CPL: usize = SAVE + 0xcb;
const EFER: usize = SAVE + 0xd0;
const CR4: usize = SAVE + 0x148;
const CR3: usize = SAVE + 0x150;
const CR0: usize = SAVE + 0x158;
const DR7: usize = SAVE + 0x160;
const DR6: usize = SAVE + 0x168;
const RFLAGS: usize = SAVE + 0x170;
const RIP: usize = SAVE + 0x178;
const RSP: usize = SAVE + 0x1d8;
const RAX: usize = SAVE + 0x1f8;
const G_PAT: usize = SAVE + 0x268;

const INTERCEPT_HLT: u32 = 1 << 24;
const INTERCEPT_SHUTDOWN: u32 = 1 << 31;
const INTERCEPT_VMRUN: u32 = 1 << 0;
const INTERCEPT_VMMCALL: u32 = 1 << 1;

/// Page-table entry bits (long mode and nested tables alike).
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_PS: u64 = 1 << 7;
/// Present, writable, user: what every nested-table entry carries.
const NPT_FLAGS: u64 = PTE_P | PTE_RW | PTE_US;

/// The guest's general-purpose registers other than RAX and RSP (which the
/// VMCB holds), indexed by their encoding: RCX = 1, RDX = 2, RBX = 3, RBP = 5,
/// RSI = 6, RDI = 7, R8..R15 = 8..15 (slots 0 and 4 are unused).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs(pub [u64; 16]);

impl GuestRegs {
    /// RDI.
    pub const RDI: usize = 7;
}

// hvsample_svm_run(vmcb_phys: u64 /* rdi */, regs: *mut GuestRegs /* rsi */)
//
// Saves the callee-saved registers, loads the guest's GPRs from `regs`, runs
// the guest until the next #VMEXIT (CLGI before VMRUN so that nothing is taken
// between the #VMEXIT and our STGI), stores the guest's GPRs back into `regs`,
// and returns. #VMEXIT restores RAX (= the VMCB address) and RSP; `regs` is
// kept on the stack across the run.
global_asm!(
    ".pushsection .text.hvsample_svm_run, \"ax\", @progbits",
    ".globl hvsample_svm_run",
    ".type hvsample_svm_run, @function",
    "hvsample_svm_run:",
    "    push rbx",
    "    push rbp",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    push rsi",
    "    mov rax, rdi",
    "    mov rcx, [rsi + 8*1]",
    "    mov rdx, [rsi + 8*2]",
    "    mov rbx, [rsi + 8*3]",
    "    mov rbp, [rsi + 8*5]",
    "    mov rdi, [rsi + 8*7]",
    "    mov r8,  [rsi + 8*8]",
    "    mov r9,  [rsi + 8*9]",
    "    mov r10, [rsi + 8*10]",
    "    mov r11, [rsi + 8*11]",
    "    mov r12, [rsi + 8*12]",
    "    mov r13, [rsi + 8*13]",
    "    mov r14, [rsi + 8*14]",
    "    mov r15, [rsi + 8*15]",
    "    mov rsi, [rsi + 8*6]",
    "    clgi",
    "    vmrun rax",
    // Back in the host: RAX = VMCB address, RSP as before VMRUN, GIF = 0.
    "    xchg rsi, [rsp]",
    "    mov [rsi + 8*1], rcx",
    "    mov [rsi + 8*2], rdx",
    "    mov [rsi + 8*3], rbx",
    "    mov [rsi + 8*5], rbp",
    "    mov [rsi + 8*7], rdi",
    "    mov [rsi + 8*8], r8",
    "    mov [rsi + 8*9], r9",
    "    mov [rsi + 8*10], r10",
    "    mov [rsi + 8*11], r11",
    "    mov [rsi + 8*12], r12",
    "    mov [rsi + 8*13], r13",
    "    mov [rsi + 8*14], r14",
    "    mov [rsi + 8*15], r15",
    "    pop rax",
    "    mov [rsi + 8*6], rax",
    "    stgi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbp",
    "    pop rbx",
    "    ret",
    ".size hvsample_svm_run, . - hvsample_svm_run",
    ".popsection",
);

extern "C" {
    fn hvsample_svm_run(vmcb_phys: u64, regs: *mut GuestRegs);
}

/// Why SVM could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum SetupError {
    /// VM_CR.SVMDIS is set: firmware disabled SVM.
    DisabledByFirmware,
    /// No memory left for a structure.
    OutOfMemory(&'static str),
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::DisabledByFirmware => f.write_str("SVM disabled by firmware (VM_CR.SVMDIS = 1)"),
            Self::OutOfMemory(what) => write!(f, "no USABLE memory left for the {what}"),
        }
    }
}

/// Turns SVM on for this CPU: EFER.SVME, and a host save area in VM_HSAVE_PA.
///
/// The caller has checked CPUID.80000001h:ECX[2] (SVM).
pub fn enable(frames: &mut Frames<'_>) -> Result<(), SetupError> {
    // SAFETY: VM_CR exists on every CPU with SVM (APM Vol. 2 §15.30.1).
    let vm_cr = unsafe { rdmsr(MSR_VM_CR) };
    if vm_cr & VM_CR_SVMDIS != 0 {
        return Err(SetupError::DisabledByFirmware);
    }
    let hsave = frames
        .page()
        .ok_or(SetupError::OutOfMemory("host save area"))?;
    // SAFETY: SVM is present and not disabled, so EFER.SVME may be set; the host
    // save area is a page of our own, 4 KiB aligned as VM_HSAVE_PA requires.
    unsafe {
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, hsave.phys);
    }
    Ok(())
}

/// A 4-level nested page table mapping guest-physical pages to host-physical
/// ones, 4 KiB at a time.
pub struct NestedTables {
    root: Block,
}

impl NestedTables {
    /// An empty table (nothing mapped).
    pub fn new(frames: &mut Frames<'_>) -> Result<Self, SetupError> {
        let root = frames
            .page()
            .ok_or(SetupError::OutOfMemory("nested PML4"))?;
        Ok(Self { root })
    }

    /// N_CR3: the physical address of the top-level table.
    pub fn root_phys(&self) -> u64 {
        self.root.phys
    }

    /// Maps guest-physical page `gpa` to host-physical page `hpa`, read/write/execute.
    pub fn map_page(
        &mut self,
        frames: &mut Frames<'_>,
        gpa: u64,
        hpa: u64,
    ) -> Result<(), SetupError> {
        // SAFETY: the table pages are ours (handed out by `frames`).
        let mut table = unsafe { self.root.table_mut() };
        for level in (1..4).rev() {
            let index = ((gpa >> (12 + 9 * level)) & 0x1ff) as usize;
            if table[index] & PTE_P == 0 {
                let next = frames
                    .page()
                    .ok_or(SetupError::OutOfMemory("nested page table"))?;
                table[index] = next.phys | NPT_FLAGS;
            }
            let next_phys = table[index] & 0x000f_ffff_ffff_f000;
            let next = Block {
                phys: next_phys,
                virt: frames.virt(next_phys),
                len: PAGE_SIZE,
            };
            // SAFETY: a table page we allocated above (or earlier).
            table = unsafe { next.table_mut() };
        }
        table[((gpa >> 12) & 0x1ff) as usize] = (hpa & !0xfff) | NPT_FLAGS;
        Ok(())
    }
}

/// The guest's initial state: 64-bit mode, CPL 0, flat segments, paging with
/// the guest's own tables at `cr3`, interrupts off.
pub struct GuestStart {
    /// Guest RIP (a guest-virtual address).
    pub rip: u64,
    /// Guest RSP.
    pub rsp: u64,
    /// Guest CR3: guest-physical address of its PML4.
    pub cr3: u64,
}

/// A VMCB and the guest registers it does not hold.
pub struct Vcpu {
    vmcb: Block,
    /// The guest's other general-purpose registers.
    pub regs: GuestRegs,
}

/// Why [`Vcpu::run`] stopped.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// EXITCODE.
    pub code: u64,
    /// EXITINFO1.
    pub info1: u64,
    /// EXITINFO2.
    pub info2: u64,
    /// EXITINTINFO (an event being delivered when the exit happened).
    pub int_info: u64,
    /// Guest RIP at the exit.
    pub rip: u64,
}

impl core::fmt::Display for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.code {
            exit::INVALID => f.write_str("VMEXIT_INVALID (VMRUN refused the guest state)")?,
            exit::SHUTDOWN => f.write_str("shutdown (the guest triple-faulted)")?,
            exit::HLT => f.write_str("HLT")?,
            exit::VMMCALL => f.write_str("VMMCALL")?,
            exit::NPF => write!(f, "nested page fault at guest-physical {:#x}", self.info2)?,
            c if (exit::EXCP_BASE..exit::EXCP_BASE + 32).contains(&c) => {
                write!(f, "exception {}", c - exit::EXCP_BASE)?
            }
            c => write!(f, "exit code {c:#x}")?,
        }
        write!(
            f,
            " at RIP {:#x} (EXITINFO1 {:#x}, EXITINFO2 {:#x}, EXITINTINFO {:#x})",
            self.rip, self.info1, self.info2, self.int_info
        )
    }
}

impl Vcpu {
    /// A VMCB for a 64-bit guest with nested paging over `npt`, ASID 1,
    /// intercepting VMRUN (required), VMMCALL, HLT and shutdown.
    pub fn new(
        frames: &mut Frames<'_>,
        npt: &NestedTables,
        start: &GuestStart,
    ) -> Result<Self, SetupError> {
        let vmcb = frames.page().ok_or(SetupError::OutOfMemory("VMCB"))?;
        let mut v = Self {
            vmcb,
            regs: GuestRegs::default(),
        };
        v.write32(INTERCEPT_MISC1, INTERCEPT_HLT | INTERCEPT_SHUTDOWN);
        v.write32(INTERCEPT_MISC2, INTERCEPT_VMRUN | INTERCEPT_VMMCALL);
        v.write32(GUEST_ASID, 1);
        v.write64(NP_CONTROL, 1);
        v.write64(N_CR3, npt.root_phys());

        // Code: type 0xB (execute/read, accessed), S, P, L (64-bit), G.
        v.segment(SEG_CS, 0x08, 0x0a9b);
        // Data: type 0x3 (read/write, accessed), S, P, D/B, G.
        for seg in [SEG_ES, SEG_SS, SEG_DS] {
            v.segment(seg, 0x10, 0x0c93);
        }
        // No descriptor tables: the guest never loads a segment and runs with
        // interrupts off; an exception would escalate to shutdown, which is
        // intercepted.
        v.write64(SEG_GDTR + 8, 0);
        v.write64(SEG_IDTR + 8, 0);
        v.write8(CPL, 0);
        // EFER: LME, LMA, SVME (the guest's SVME must be 1, §15.5.1).
        v.write64(EFER, (1 << 8) | (1 << 10) | (1 << 12));
        v.write64(CR4, 1 << 5); // PAE
        v.write64(CR3, start.cr3);
        // CR0: PE, MP, ET, NE, WP, PG.
        v.write64(
            CR0,
            (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31),
        );
        v.write64(DR7, 0x400);
        v.write64(DR6, 0xffff_0ff0);
        v.write64(RFLAGS, 1 << 1); // bit 1 is always 1; IF = 0
        v.write64(RIP, start.rip);
        v.write64(RSP, start.rsp);
        // The power-on PAT: WB, WT, UC-, UC, repeated.
        v.write64(G_PAT, 0x0007_0406_0007_0406);
        Ok(v)
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        (self.vmcb.virt as usize + offset) as *mut T
    }
    fn write8(&mut self, offset: usize, value: u8) {
        // SAFETY: inside our VMCB page.
        unsafe { self.at::<u8>(offset).write_volatile(value) }
    }
    fn write16(&mut self, offset: usize, value: u16) {
        // SAFETY: inside our VMCB page, aligned.
        unsafe { self.at::<u16>(offset).write_volatile(value) }
    }
    fn write32(&mut self, offset: usize, value: u32) {
        // SAFETY: inside our VMCB page, aligned.
        unsafe { self.at::<u32>(offset).write_volatile(value) }
    }
    fn write64(&mut self, offset: usize, value: u64) {
        // SAFETY: inside our VMCB page, aligned.
        unsafe { self.at::<u64>(offset).write_volatile(value) }
    }
    fn read64(&self, offset: usize) -> u64 {
        // SAFETY: inside our VMCB page, aligned.
        unsafe { self.at::<u64>(offset).read_volatile() }
    }
    fn segment(&mut self, at: usize, selector: u16, attrib: u16) {
        self.write16(at, selector);
        self.write16(at + 2, attrib);
        self.write32(at + 4, 0xffff_ffff);
        self.write64(at + 8, 0);
    }

    /// Guest RAX.
    pub fn rax(&self) -> u64 {
        self.read64(RAX)
    }
    /// Guest RIP.
    pub fn rip(&self) -> u64 {
        self.read64(RIP)
    }
    /// Sets guest RIP (to step over an intercepted instruction: the CPUs QEMU
    /// emulates have no next-RIP saving).
    pub fn set_rip(&mut self, rip: u64) {
        self.write64(RIP, rip);
    }
    /// Flush this guest's TLB entries on the next VMRUN (after changing the
    /// nested tables).
    pub fn flush_tlb_on_entry(&mut self) {
        self.write8(TLB_CONTROL, 1);
    }

    /// Runs the guest until the next #VMEXIT.
    pub fn run(&mut self) -> Exit {
        // SAFETY: SVM is enabled (enable()), the VMCB is a page of ours describing
        // a consistent guest whose memory is all behind the nested tables; the
        // assembly saves and restores every register the ABI asks it to.
        unsafe { hvsample_svm_run(self.vmcb.phys, &mut self.regs) };
        self.write8(TLB_CONTROL, 0);
        Exit {
            // VMEXIT_INVALID is -1; QEMU's TCG writes it as a 32-bit -1.
            code: match self.read64(EXITCODE) {
                0xffff_ffff => exit::INVALID,
                c => c,
            },
            info1: self.read64(EXITINFO1),
            info2: self.read64(EXITINFO2),
            int_info: self.read64(EXITINTINFO),
            rip: self.rip(),
        }
    }
}

/// Builds the guest's own long-mode page tables inside its memory: an
/// identity map of guest-physical 0..1 GiB with 2 MiB pages, PML4 at `pml4`
/// and the PDPT and PD in the two pages after it. Returns the value for CR3.
pub fn build_guest_page_tables(guest_mem: &mut [u8], pml4: u64) -> u64 {
    let mut put = |gpa: u64, value: u64| {
        let at = gpa as usize;
        guest_mem[at..at + 8].copy_from_slice(&value.to_le_bytes());
    };
    let pdpt = pml4 + PAGE_SIZE;
    let pd = pdpt + PAGE_SIZE;
    put(pml4, pdpt | PTE_P | PTE_RW);
    put(pdpt, pd | PTE_P | PTE_RW);
    for i in 0..512u64 {
        put(pd + i * 8, (i << 21) | PTE_P | PTE_RW | PTE_PS);
    }
    pml4
}
