//! The fixed areas below 1 MiB the BIOS loader uses (docs/bios.md).

// LOADER_START, IMAGE_START/IMAGE_LIMIT, BOUNCE, BOUNCE_SECTORS, VBE_INFO, VBE_MODE, E820_BUF,
// PML4, LOADER_END, ...: generated from asm/layout.inc, which stage 1 and stage 2 include too.
include!(concat!(env!("OUT_DIR"), "/layout.rs"));

// What the code relies on (the addresses themselves live in layout.inc).
const _: () = {
    // INT 13h gets the bounce buffer as segment:0, and no transfer crosses a 64 KiB boundary.
    assert!(BOUNCE.is_multiple_of(0x1_0000) && BOUNCE_SECTORS * 512 <= 0x1_0000);
    assert!(BOUNCE + BOUNCE_SECTORS * 512 <= E820_BUF && E820_BUF + 24 <= PML4);
    assert!(VBE_INFO + 512 <= VBE_MODE && VBE_MODE + 256 <= BOUNCE + BOUNCE_SECTORS * 512);
    // The image, then the 64 KiB long-mode stack; the six page tables end the low area.
    assert!(IMAGE_LIMIT + 0x1_0000 <= LM_STACK && LM_STACK <= BOUNCE);
    assert!(PDPT == PML4 + 0x1000 && PD0 == PDPT + 0x1000 && PD0 + 4 * 0x1000 == LOADER_END);
    assert!(LOADER_END <= 0xA_0000);
};

/// Where the loaded image (with its .bss) ends: bios.ld's `__loader_end`, at most IMAGE_LIMIT.
pub fn image_end() -> u64 {
    unsafe extern "C" {
        static __loader_end: u8;
    }
    // Only the symbol's address is taken, never its byte.
    core::ptr::addr_of!(__loader_end) as u64
}

/// Reads a `T` at a physical address (identity-mapped).
///
/// # Safety
/// The address must be mapped and hold a `T`.
pub unsafe fn read<T: Copy>(addr: u64) -> T {
    core::ptr::read_unaligned(addr as *const T)
}

/// Writes a `T` at a physical address (identity-mapped).
///
/// # Safety
/// The address must be mapped and be the loader's.
pub unsafe fn write<T: Copy>(addr: u64, v: T) {
    core::ptr::write_unaligned(addr as *mut T, v)
}
