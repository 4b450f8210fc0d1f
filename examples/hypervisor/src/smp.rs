//! The guest on every CPU: the BSP releases each AP the loader parked
//! (`START_APS`, hvboot-api's `CpuStart::start`), every CPU enables SVM and runs
//! its own guest with its own host save area, VMCB, nested tables and guest
//! memory, all from its share of one block ([`guest::shares`]: the loader's
//! guest reservation), and the BSP prints one result line per CPU.
//!
//! Only the BSP prints while the guests run (the APs report through [`WORK`]),
//! so the lines come out in CPU order.

use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

use hvboot_api::{serial_println, BootInfo, CpuStart, CpuState};

use crate::frames::{Block, Frames};
use crate::guest::{self, CPU_SHARE};

/// CPUs this sample runs guests on (the request's guest reservation has room for this many).
pub const MAX_CPUS: usize = 64;
/// Each AP's stack, asked for in the request.
pub const AP_STACK: u64 = 64 * 1024;

/// Where a CPU's run stands.
const IDLE: u8 = 0;
const ARRIVED: u8 = 1;
const DONE: u8 = 2;
const FAILED: u8 = 3;

/// What one CPU reports: its state and its guest's result.
struct Work {
    state: AtomicU8,
    result: AtomicU64,
}

static WORK: [Work; MAX_CPUS] = [const {
    Work {
        state: AtomicU8::new(IDLE),
        result: AtomicU64::new(0),
    }
}; MAX_CPUS];
/// The boot information and the shares' block, for the APs.
static INFO: AtomicPtr<BootInfo> = AtomicPtr::new(core::ptr::null_mut());
static SHARES_PHYS: AtomicU64 = AtomicU64::new(0);

/// How long the BSP waits for the APs' guests, in TSC ticks (tens of seconds
/// under TCG at any TSC rate QEMU uses; the CPUs take milliseconds).
const WAIT_TICKS: u64 = 1 << 37;

/// CPU `k`'s share of the block.
fn share(info: &BootInfo, k: usize) -> Block {
    let phys = SHARES_PHYS.load(Ordering::Acquire) + k as u64 * CPU_SHARE;
    Block {
        phys,
        virt: info.phys_to_virt(phys),
        len: CPU_SHARE,
    }
}

/// Runs CPU `k`'s guest in its share; records the outcome.
fn run_here(info: &BootInfo, k: usize, verbose: bool) -> Result<u64, guest::RunError> {
    let outcome = guest::run(&mut Frames::within(info, share(info, k)), verbose);
    let (state, result) = match outcome {
        Ok(r) => (DONE, r),
        Err(_) => (FAILED, 0),
    };
    WORK[k].result.store(result, Ordering::Relaxed);
    WORK[k].state.store(state, Ordering::Release);
    outcome
}

/// A released AP: RDI = its record, RSI = its index `k`.
extern "C" fn ap_main(_me: &'static CpuStart, k: u64) -> ! {
    let k = k as usize;
    WORK[k].state.store(ARRIVED, Ordering::Release);
    // SAFETY: set by the BSP before it released this CPU; the boot information lives forever.
    let info = unsafe { &*INFO.load(Ordering::Acquire) };
    if let Err(e) = run_here(info, k, false) {
        serial_println!("cpu {k}: guest FAILED: {e}");
    }
    loop {
        // SAFETY: interrupts are off (the loader's promise for a released CPU): halt for good.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Starts every parked AP, runs the guest on every CPU and prints
/// `smp: N of M CPUs online` and `cpu K: guest result: R` per CPU. False when a
/// guest failed or a started CPU did not finish.
pub fn run_everywhere(info: &'static BootInfo, frames: &mut Frames<'_>) -> bool {
    let starts = info.cpu_starts();
    // Without START_APS records (a loader that did not start them), the BSP alone, as CPU 0.
    let cpus = starts.len().clamp(1, MAX_CPUS);
    let bsp = starts
        .iter()
        .position(|c| c.state == CpuState::BSP)
        .unwrap_or(0);
    let Some((block, source)) = guest::shares(info, frames, cpus) else {
        serial_println!("guest: FAILED: no memory for {cpus} CPUs' guests");
        return false;
    };
    serial_println!(
        "smp: {cpus} shares of {} KiB at host-physical {:#x} (from {source})",
        CPU_SHARE / 1024,
        block.phys
    );
    INFO.store(info as *const BootInfo as *mut BootInfo, Ordering::Release);
    SHARES_PHYS.store(block.phys, Ordering::Release);

    let mut released = [false; MAX_CPUS];
    for (k, cpu) in starts.iter().enumerate() {
        if cpu.state != CpuState::PARKED {
            continue;
        }
        if k >= MAX_CPUS {
            serial_println!(
                "smp: cpu {k} (APIC ID {}) not started: this sample runs {MAX_CPUS} CPUs at most",
                cpu.apic_id
            );
            continue;
        }
        match cpu.start(ap_main, k as u64) {
            Ok(()) => released[k] = true,
            Err(e) => serial_println!("smp: cpu {k} (APIC ID {}) not started: {e:?}", cpu.apic_id),
        }
    }

    let bsp_outcome = run_here(info, bsp, true);
    if let Err(e) = bsp_outcome {
        serial_println!("cpu {bsp}: guest FAILED: {e}");
    }
    // SAFETY: RDTSC is available on every x86_64 CPU.
    let deadline = unsafe { core::arch::x86_64::_rdtsc() } + WAIT_TICKS;
    while (0..cpus).any(|k| released[k] && WORK[k].state.load(Ordering::Acquire) < DONE) {
        // SAFETY: as above.
        if unsafe { core::arch::x86_64::_rdtsc() } > deadline {
            break;
        }
        core::hint::spin_loop();
    }

    // Usable: the CPUs the MADT lists as enabled (the loader tried to start them all).
    let usable = starts
        .iter()
        .filter(|c| {
            matches!(
                c.state,
                CpuState::BSP | CpuState::PARKED | CpuState::NO_ANSWER
            )
        })
        .count()
        .max(1);
    let online = 1
        + (0..cpus)
            .filter(|&k| released[k] && WORK[k].state.load(Ordering::Acquire) != IDLE)
            .count();
    serial_println!("smp: {online} of {usable} CPUs online");
    let mut ok = true;
    for k in 0..cpus {
        if k != bsp && !released[k] {
            continue;
        }
        match WORK[k].state.load(Ordering::Acquire) {
            DONE => serial_println!(
                "cpu {k}: guest result: {}",
                WORK[k].result.load(Ordering::Relaxed)
            ),
            FAILED => {
                serial_println!("cpu {k}: guest FAILED (above)");
                ok = false;
            }
            ARRIVED => {
                serial_println!("cpu {k}: guest did not finish in time");
                ok = false;
            }
            _ => {
                serial_println!("cpu {k}: did not take its entry");
                ok = false;
            }
        }
    }
    ok && online == usable
}
