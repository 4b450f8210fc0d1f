//! The smp kernel's part (feature `smp`, tests/test_smp.py): the loader's per-CPU records, then
//! each parked AP released in turn through its mailbox with an argument; it reports what it
//! finds on itself, then halts. One AP at a time, so the serial lines do not interleave.
//!
//! HVB cpu_start index=I apic_id=A uid=U state=S flags=F tsc=T stack_bottom=B stack_size=N mailbox=M microcode=C
//! HVB bsp_state cr3=.. pat=.. mtrr_def=.. efer=..
//! HVB ap apic_id=A me_ok=0|1 arg=.. cr3=.. rsp=.. gdt=.. tr=.. efer=.. pat=.. mtrr_def=.. cr0=.. cr4=.. rflags=..
//! HVB smp released=N parked=N

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use hvboot_api::cpu::{rdmsr, read_cr0, read_cr3, read_cr4, MSR_EFER};
use hvboot_api::{serial_println, BootInfo, CpuStart, CpuState};

/// The argument each AP gets: this plus its APIC ID.
pub const ARG_BASE: u64 = 0x5eed_0000_0000;
const IA32_PAT: u32 = 0x277;
const IA32_MTRR_DEF_TYPE: u32 = 0x2FF;

static DONE: AtomicU64 = AtomicU64::new(u64::MAX);

fn gdtr() -> (u16, u64) {
    let mut buf = [0u8; 10];
    // SAFETY: SGDT stores 10 bytes.
    unsafe { asm!("sgdt [{}]", in(reg) buf.as_mut_ptr()) };
    let limit = u16::from_le_bytes([buf[0], buf[1]]);
    let base = u64::from_le_bytes(buf[2..10].try_into().unwrap());
    (limit, base)
}

fn tr() -> u16 {
    let t: u16;
    // SAFETY: STR only reads the task register.
    unsafe { asm!("str {0:x}", out(reg) t) };
    t
}

extern "C" fn ap_main(me: &'static CpuStart, arg: u64) -> ! {
    let (rsp, rflags): (u64, u64);
    // SAFETY: reading RSP and RFLAGS.
    unsafe { asm!("mov {}, rsp", "pushfq", "pop {}", out(reg) rsp, out(reg) rflags) };
    let (limit, base) = gdtr();
    // SAFETY: ring 0; EFER, PAT and MTRRdefType exist on every CPU QEMU models here.
    let (efer, pat, def) = unsafe { (rdmsr(MSR_EFER), rdmsr(IA32_PAT), rdmsr(IA32_MTRR_DEF_TYPE)) };
    let me_ok = u8::from(me.state == CpuState::PARKED);
    serial_println!(
        "HVB ap apic_id={} me_ok={} arg={:#x} cr3={:#x} rsp={:#x} gdt={:#x} gdt_limit={} tr={:#x} efer={:#x} pat={:#x} mtrr_def={:#x} cr0={:#x} cr4={:#x} rflags={:#x}",
        me.apic_id, me_ok, arg, read_cr3(), rsp, base, limit, tr(), efer, pat, def, read_cr0(), read_cr4(), rflags
    );
    DONE.store(u64::from(me.apic_id), Ordering::Release);
    loop {
        // SAFETY: stopping this CPU.
        unsafe { asm!("cli", "hlt") };
    }
}

pub fn run(info: &BootInfo) {
    let starts = info.cpu_starts();
    for (i, s) in starts.iter().enumerate() {
        serial_println!(
            "HVB cpu_start index={} apic_id={} uid={} state={} flags={:#x} tsc={} stack_bottom={:#x} stack_size={:#x} mailbox={:#x} microcode={:#x}",
            i, s.apic_id, s.acpi_uid, s.state.0, s.flags.0, s.tsc_arrived, s.stack_bottom, s.stack_size, s.mailbox, s.microcode
        );
    }
    // SAFETY: ring 0, MSRs as above.
    let (efer, pat, def) = unsafe { (rdmsr(MSR_EFER), rdmsr(IA32_PAT), rdmsr(IA32_MTRR_DEF_TYPE)) };
    serial_println!("HVB bsp_state cr3={:#x} pat={:#x} mtrr_def={:#x} efer={:#x}", read_cr3(), pat, def, efer);
    let (mut released, mut parked) = (0, 0);
    for s in starts {
        if s.state != CpuState::PARKED {
            continue;
        }
        parked += 1;
        if s.start(ap_main, ARG_BASE + u64::from(s.apic_id)).is_err() {
            continue;
        }
        // Wait (bounded) for it to report, so lines stay whole.
        let mut spins = 0u64;
        while DONE.load(Ordering::Acquire) != u64::from(s.apic_id) && spins < 2_000_000_000 {
            core::hint::spin_loop();
            spins += 1;
        }
        if DONE.load(Ordering::Acquire) == u64::from(s.apic_id) {
            released += 1;
        }
    }
    serial_println!("HVB smp released={} parked={}", released, parked);
}
