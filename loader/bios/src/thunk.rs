//! Calls into the BIOS from long mode through stage 2's real-mode thunk (asm/stage2.asm,
//! `hvboot_bios_call`): the registers go in, INT n runs in real mode, the registers come back.

/// The registers a real-mode BIOS call sees and returns (the layout stage2.asm expects).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Regs {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
    pub esi: u32,
    pub edi: u32,
    pub ebp: u32,
    pub ds: u16,
    pub es: u16,
    pub eflags: u32,
}

const _: () = assert!(core::mem::size_of::<Regs>() == 36);

impl Regs {
    /// The carry flag, which most BIOS services set on failure.
    pub fn carry(&self) -> bool {
        self.eflags & 1 != 0
    }

    /// AH.
    pub fn ah(&self) -> u8 {
        (self.eax >> 8) as u8
    }
}

extern "sysv64" {
    fn hvboot_bios_call(int_no: u32, regs: *mut Regs);
    fn hvboot_bios_read(regs: *mut Regs);
}

/// Issues `INT n` in real mode with `regs`, which then hold what the BIOS returned.
pub fn int(n: u8, regs: &mut Regs) {
    // SAFETY: the thunk preserves the long-mode state and the callee-saved registers; the BIOS
    // only touches memory below 1 MiB that the loader reserves for it (docs/bios.md).
    unsafe { hvboot_bios_call(n as u32, regs) }
}

/// Runs stage 2's real-mode disk read loop (`rm_read_batch` in asm/stage2.asm) with `regs`:
/// EAX sectors, EBX destination, ECX:EBP (low, high) LBA, DL drive, ESI bounce buffer, EDI
/// sectors per transfer. On return: carry clear and AH = 0 on success, else carry set, AH the
/// INT 13h status, ECX:EBP the failing transfer's LBA and EDI its sector count.
///
/// # Safety
/// The destination range must lie below 4 GiB and be the caller's to overwrite; the bounce
/// buffer must be the loader's, below 1 MiB, 16-byte aligned and hold EDI sectors.
pub unsafe fn read_batch(regs: &mut Regs) {
    hvboot_bios_read(regs)
}

/// A real-mode segment:offset for a linear address below 1 MiB.
pub fn seg_off(linear: u64) -> (u16, u16) {
    debug_assert!(linear < 0x10_0000);
    ((linear >> 4) as u16, (linear & 0xF) as u16)
}
