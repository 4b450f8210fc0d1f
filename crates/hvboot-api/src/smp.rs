//! Releasing the processors the loader started (`RequestFlags::START_APS`, docs/hypervisor.md
//! "Starting the processors"). Each parked processor spins on its own [`CpuMailbox`]; writing
//! an argument and then an entry address there sends it to the entry with RDI = its own
//! [`CpuStart`] and RSI = the argument, on its own stack, interrupts off.
//!
//! ```no_run
//! use hvboot_api::{BootInfo, CpuStart};
//!
//! extern "C" fn ap_main(me: &'static CpuStart, arg: u64) -> ! {
//!     loop {}
//! }
//!
//! fn start_all(info: &BootInfo) {
//!     for cpu in info.cpu_starts() {
//!         let _ = cpu.start(ap_main, 42); // Err for the BSP and CPUs that are not parked
//!     }
//! }
//! ```

use core::sync::atomic::{fence, Ordering};

use crate::protocol::{CpuMailbox, CpuStart, CpuState, MailboxState};

/// The entry a released processor jumps to: RDI = its record, RSI = the argument.
pub type ApEntry = extern "C" fn(&'static CpuStart, u64) -> !;

/// Why [`CpuStart::start`] did not release a processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// Its state is not `PARKED` (the BSP, one that did not answer, or not started).
    NotParked(CpuState),
    /// Its mailbox says it was released already.
    AlreadyReleased,
}

impl CpuStart {
    /// The mailbox, where the loader put it (the direct map must still be the loader's).
    pub fn mailbox_ptr(&self) -> Option<*mut CpuMailbox> {
        (self.mailbox != 0).then_some(self.mailbox as *mut CpuMailbox)
    }

    /// Whether the processor has taken its entry address (reads its mailbox).
    pub fn released(&self) -> bool {
        self.mailbox_state() == Some(MailboxState::RELEASED)
    }

    fn mailbox_state(&self) -> Option<MailboxState> {
        let m = self.mailbox_ptr()?;
        // SAFETY: a parked CPU's mailbox, mapped in the loader's direct map (the loader's
        // promise for a CpuStart with a mailbox); the CPU writes `state`, hence volatile.
        Some(unsafe { core::ptr::addr_of!((*m).state).read_volatile() })
    }

    /// Sends this parked processor to `entry` with `argument`. The argument is written before
    /// the entry address (the processor reads the entry first, then the argument).
    pub fn start(&self, entry: ApEntry, argument: u64) -> Result<(), StartError> {
        if self.state != CpuState::PARKED {
            return Err(StartError::NotParked(self.state));
        }
        let Some(m) = self.mailbox_ptr() else {
            return Err(StartError::NotParked(self.state));
        };
        if self.mailbox_state() != Some(MailboxState::PARKED) {
            return Err(StartError::AlreadyReleased);
        }
        // SAFETY: as in `mailbox_state`; the processor reads these fields only.
        unsafe {
            core::ptr::addr_of_mut!((*m).argument).write_volatile(argument);
            fence(Ordering::Release);
            core::ptr::addr_of_mut!((*m).entry).write_volatile(entry as usize as u64);
        }
        Ok(())
    }
}
