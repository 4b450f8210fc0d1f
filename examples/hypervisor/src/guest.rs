//! The sample guest and the host side of running it under SVM with nested paging.
//!
//! Guest-physical layout (`GUEST_MEM_SIZE` bytes, backed by one contiguous
//! host block):
//!
//! | GPA | what |
//! |---|---|
//! | 0x1000..0x4000 | the guest's PML4, PDPT, PD: identity map of 0..1 GiB, 2 MiB pages |
//! | 0x4000 | the guest's code (copied from [`GUEST_CODE`]) |
//! | ..0x8000 | its stack (RSP starts at 0x8000) |
//! | 0x2_0000 | a data page, *not* mapped in the nested tables at first: the guest's first touch exits with a nested page fault and the host maps it then |
//!
//! At the start only the first `INITIAL_MAPPED` bytes are mapped in the nested
//! tables. The guest computes Fibonacci(RDI) in RAX, stores it in the data
//! page and reads it back, pushes and pops it through its stack, then makes
//! hypercall 1 (`VMMCALL` with RDI = 1, RAX = the result) and halts.
//!
//! The host checks the result against its own computation, checks that the
//! value the guest stored at GPA 0x2_0000 is in the host page it mapped
//! there, and treats any other exit as a failure.

use core::arch::global_asm;

use hvboot_api::{serial_println, BootInfo};

use crate::frames::{Block, Frames, PAGE_SIZE};
use crate::svm::{self, exit, GuestRegs, GuestStart, NestedTables, SetupError, Vcpu};

/// Bytes of guest-physical memory.
pub const GUEST_MEM_SIZE: u64 = 256 * 1024;
/// Bytes mapped in the nested tables before the guest runs.
const INITIAL_MAPPED: u64 = 0x1_0000;
const GUEST_PML4: u64 = 0x1000;
const GUEST_ENTRY: u64 = 0x4000;
const GUEST_STACK_TOP: u64 = 0x8000;
/// The data page the guest writes its result to (demand-mapped).
const GUEST_DATA: u64 = 0x2_0000;
/// Which Fibonacci number the guest computes (the largest below 2^64 is F(93)).
const FIB_N: u64 = 90;
/// Hypercall numbers (in RDI at VMMCALL).
const HC_RESULT: u64 = 1;
/// Length of the VMMCALL instruction (0F 01 D9).
const VMMCALL_LEN: u64 = 3;
/// More exits than this and the guest is looping.
const MAX_EXITS: u32 = 32;

// The guest's code: position independent 64-bit code, assembled into the
// kernel's read-only data and copied into guest memory.
global_asm!(
    ".pushsection .rodata.hvsample_guest, \"a\", @progbits",
    ".globl hvsample_guest_start",
    ".globl hvsample_guest_end",
    "hvsample_guest_start:",
    "    xor eax, eax", // F(0)
    "    mov ecx, 1",   // F(1)
    "    test rdi, rdi",
    "    jz .Lguest_done",
    ".Lguest_loop:",
    "    lea rdx, [rax + rcx]",
    "    mov rax, rcx",
    "    mov rcx, rdx",
    "    dec rdi",
    "    jnz .Lguest_loop",
    ".Lguest_done:",
    "    mov ebx, 0x20000", // GUEST_DATA
    "    mov [rbx], rax",   // nested page fault: the host maps the page
    "    mov rax, [rbx]",
    "    push rax",
    "    pop rax",
    "    mov edi, 1", // HC_RESULT
    "    vmmcall",
    "    hlt",
    "    ud2",
    "hvsample_guest_end:",
    ".popsection",
);

extern "C" {
    static hvsample_guest_start: u8;
    static hvsample_guest_end: u8;
}

/// The guest's machine code.
fn guest_code() -> &'static [u8] {
    // SAFETY: the two symbols delimit the bytes assembled above, in the kernel's
    // read-only data.
    unsafe {
        let start = core::ptr::addr_of!(hvsample_guest_start);
        let end = core::ptr::addr_of!(hvsample_guest_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// Fibonacci number `n` (wrapping), as the guest computes it.
pub const fn fibonacci(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    let mut i = 0;
    while i < n {
        let next = a.wrapping_add(b);
        a = b;
        b = next;
        i += 1;
    }
    a
}

/// Bytes of one CPU's share of the guest memory: its guest's memory, then the
/// host pages of that CPU (host save area, VMCB, nested tables).
pub const CPU_SHARE: u64 = 512 * 1024;

/// Where each CPU's share comes from: one block of `cpus` shares.
///
/// The loader's guest reservation (asked for in the request header, typed
/// `GUEST_RESERVED` in the memory map) when it made one large enough; else the
/// block is carved from the `USABLE` regions.
pub fn shares(
    info: &BootInfo,
    frames: &mut Frames<'_>,
    cpus: usize,
) -> Option<(Block, &'static str)> {
    let len = CPU_SHARE * cpus as u64;
    if let Some(block) = crate::reservation::from_boot_info(info, len) {
        return Some((block, "the loader's guest reservation"));
    }
    frames
        .alloc(len, 2 * 1024 * 1024)
        .map(|b| (b, "USABLE memory"))
}

/// Prints a line on COM1 when `verbose` (the BSP tells the story; the APs run
/// the same steps quietly).
macro_rules! say {
    ($verbose:expr, $($arg:tt)*) => {
        if $verbose {
            serial_println!($($arg)*);
        }
    };
}

/// Why running the guest failed.
#[derive(Clone, Copy, Debug)]
pub enum RunError {
    /// Setting up SVM or the guest failed.
    Setup(SetupError),
    /// No memory for the guest.
    NoGuestMemory,
    /// The guest exited in a way it should not have.
    UnexpectedExit(svm::Exit),
    /// The guest made an unknown hypercall.
    UnknownHypercall(u64),
    /// The result was wrong.
    WrongResult {
        /// What the guest said.
        got: u64,
        /// What it should have said.
        expected: u64,
    },
    /// The guest halted without reporting a result.
    NoResult,
    /// The value in the data page's host frame is not the result.
    DataPageMismatch(u64),
    /// The guest kept exiting.
    TooManyExits,
}

impl core::fmt::Display for RunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Setup(e) => write!(f, "setup: {e}"),
            Self::NoGuestMemory => f.write_str("no memory for the guest"),
            Self::UnexpectedExit(e) => write!(f, "unexpected #VMEXIT: {e}"),
            Self::UnknownHypercall(n) => write!(f, "unknown hypercall {n}"),
            Self::WrongResult { got, expected } => {
                write!(f, "wrong result {got}, expected {expected}")
            }
            Self::NoResult => f.write_str("the guest halted without a result"),
            Self::DataPageMismatch(v) => {
                write!(f, "the data page's host frame holds {v:#x}, not the result")
            }
            Self::TooManyExits => write!(f, "more than {MAX_EXITS} exits"),
        }
    }
}

impl From<SetupError> for RunError {
    fn from(e: SetupError) -> Self {
        Self::Setup(e)
    }
}

/// Sets up SVM on this CPU, builds the guest and runs it to its HLT, every
/// structure taken from `frames` (this CPU's share). Prints what happens when
/// `verbose`; returns the guest's result.
pub fn run(frames: &mut Frames<'_>, verbose: bool) -> Result<u64, RunError> {
    svm::enable(frames)?;
    say!(verbose, "svm: enabled (EFER.SVME = 1, host save area set)");

    let mem = frames
        .alloc(GUEST_MEM_SIZE, PAGE_SIZE)
        .ok_or(RunError::NoGuestMemory)?;
    say!(
        verbose,
        "svm: guest memory: {} KiB at host-physical {:#x}",
        mem.len / 1024,
        mem.phys
    );
    // SAFETY: the block is ours; nothing else refers to it.
    let bytes = unsafe { mem.bytes_mut() };
    let code = guest_code();
    let entry = GUEST_ENTRY as usize;
    bytes[entry..entry + code.len()].copy_from_slice(code);
    let cr3 = svm::build_guest_page_tables(bytes, GUEST_PML4);

    let mut npt = NestedTables::new(frames)?;
    for gpa in (0..INITIAL_MAPPED).step_by(PAGE_SIZE as usize) {
        npt.map_page(frames, gpa, mem.phys + gpa)?;
    }
    say!(
        verbose,
        "svm: nested page tables at {:#x}: guest-physical 0..{:#x} mapped, the rest on demand",
        npt.root_phys(),
        INITIAL_MAPPED
    );

    let start = GuestStart {
        rip: GUEST_ENTRY,
        rsp: GUEST_STACK_TOP,
        cr3,
    };
    let mut vcpu = Vcpu::new(frames, &npt, &start)?;
    vcpu.regs.0[GuestRegs::RDI] = FIB_N;
    say!(
        verbose,
        "svm: VMRUN: 64-bit guest at RIP {GUEST_ENTRY:#x}, ASID 1, computing fib({FIB_N})"
    );

    let expected = fibonacci(FIB_N);
    let mut result = None;
    for _ in 0..MAX_EXITS {
        let e = vcpu.run();
        match e.code {
            exit::VMMCALL => {
                let call = vcpu.regs.0[GuestRegs::RDI];
                if call != HC_RESULT {
                    return Err(RunError::UnknownHypercall(call));
                }
                let got = vcpu.rax();
                say!(
                    verbose,
                    "svm: #VMEXIT VMMCALL at RIP {:#x}: hypercall {call}",
                    e.rip
                );
                if got != expected {
                    return Err(RunError::WrongResult { got, expected });
                }
                result = Some(got);
                vcpu.set_rip(e.rip + VMMCALL_LEN);
            }
            exit::NPF => {
                let gpa = e.info2 & !(PAGE_SIZE - 1);
                if gpa < INITIAL_MAPPED || gpa >= mem.len {
                    return Err(RunError::UnexpectedExit(e));
                }
                npt.map_page(frames, gpa, mem.phys + gpa)?;
                vcpu.flush_tlb_on_entry();
                say!(
                    verbose,
                    "svm: #VMEXIT NPF at RIP {:#x}: guest-physical {:#x} (error code {:#x}) -> mapped host {:#x}",
                    e.rip,
                    e.info2,
                    e.info1,
                    mem.phys + gpa
                );
            }
            exit::HLT => {
                say!(
                    verbose,
                    "svm: #VMEXIT HLT at RIP {:#x}: the guest is done",
                    e.rip
                );
                let got = result.ok_or(RunError::NoResult)?;
                let data = u64::from_le_bytes(
                    bytes[GUEST_DATA as usize..GUEST_DATA as usize + 8]
                        .try_into()
                        .unwrap_or([0; 8]),
                );
                if data != got {
                    return Err(RunError::DataPageMismatch(data));
                }
                say!(
                    verbose,
                    "svm: guest-physical {GUEST_DATA:#x} holds the result in host page {:#x}: nested paging translated it",
                    mem.phys + GUEST_DATA
                );
                say!(verbose, "guest check: ok (fib({FIB_N}) = {expected})");
                return Ok(got);
            }
            _ => return Err(RunError::UnexpectedExit(e)),
        }
    }
    Err(RunError::TooManyExits)
}
