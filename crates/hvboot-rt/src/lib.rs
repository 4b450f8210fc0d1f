//! The bare-metal runtime of hvboot: the handful of C-runtime symbols that code
//! built for the *host* target needs when it is linked without libc.
//!
//! # Why this crate exists
//!
//! hvboot's bare-metal code (the loader's binaries and the kernels) is built for
//! `x86_64-unknown-linux-gnu`, the only target whose precompiled `core` is
//! installed, and linked with `-nostdlib -nostartfiles -static`. That precompiled
//! `core` (and the code rustc/LLVM generates) expects two kinds of symbols the
//! Linux target normally gets from elsewhere:
//!
//! - `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`: on Linux these come from
//!   libc (`compiler_builtins` leaves them out there). LLVM emits calls to them
//!   for struct copies, slice copies, zeroing and comparisons.
//! - `rust_eh_personality`: `core` for this target was built with `panic=unwind`,
//!   so its unwind tables name the personality routine that `std`/`panic_unwind`
//!   usually supplies. With `panic = "abort"` nothing ever unwinds, so an empty
//!   function satisfies the linker. `_Unwind_Resume` likewise, for `alloc`'s cleanup paths.
//!
//! A bare-metal crate links this crate with `use hvboot_rt as _;` (or
//! `extern crate hvboot_rt;`), which is enough for the linker to see it.
//!
//! # Implementation notes
//!
//! LLVM recognises byte-copy/byte-set loops and turns them back into calls to
//! `memcpy`/`memset`, which would make these functions call themselves. So the
//! crate is `#![no_builtins]`, and copies and fills use `rep movs` / `rep stos`.
//! Large forward copies and fills move 8 bytes per step (`rep movsq` / `rep stosq`,
//! then the remaining bytes): on hardware with ERMSB `rep movsb` is as fast, but
//! QEMU's TCG emulates string instructions one element per step, so byte steps
//! made zeroing and copying megabytes (a loader's file pages, a kernel's memory)
//! eight times slower than they need to be. `memmove` copies
//! backwards with the direction flag set and clears it again (the ABI requires
//! DF = 0 at every call and return).
//!
//! Under `cargo test` (host, with std and libc) the functions keep their mangled
//! names so that they do not replace the host libc's; the tests call them directly.
#![cfg_attr(not(test), no_std)]
#![no_builtins]
#![warn(missing_docs)]

use core::arch::asm;

/// Copies `n` bytes from `src` to `dest`; the ranges must not overlap.
///
/// # Safety
/// `src` must be valid for reading and `dest` for writing `n` bytes, and the two
/// ranges must not overlap.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges.
    unsafe { copy_forward(dest, src, n) };
    dest
}

/// Below this many bytes the qword loop is not worth its set-up.
const WIDE: usize = 64;

/// A forward copy: qwords, then the 0-7 bytes left (DF is 0 per the SysV ABI).
///
/// # Safety
/// As for `memcpy`; also correct when `dest` < `src` and the ranges overlap.
unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    let (qwords, bytes) = if n >= WIDE { (n / 8, n % 8) } else { (0, n) };
    // SAFETY: the caller guarantees both ranges; the second instruction continues where
    // the first stopped (RSI/RDI advance with each step).
    unsafe {
        asm!(
            "rep movsq",
            "mov rcx, {bytes}",
            "rep movsb",
            bytes = in(reg) bytes,
            inout("rcx") qwords => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Copies `n` bytes from `src` to `dest`; the ranges may overlap.
///
/// # Safety
/// `src` must be valid for reading and `dest` for writing `n` bytes.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n == 0 || core::ptr::eq(dest.cast_const(), src) {
        return dest;
    }
    // A forward copy is correct unless dest lies inside (src, src + n).
    let forward = (dest as usize) < (src as usize) || (dest as usize) - (src as usize) >= n;
    if forward {
        // SAFETY: as for memcpy; a forward copy handles dest < src overlap (each qword is
        // read before the bytes it lands on are written, since dest trails src).
        unsafe { copy_forward(dest, src, n) };
    } else {
        // Copy from the last byte down, with DF set; clear DF again afterwards.
        // SAFETY: the caller guarantees both ranges; the last bytes are at +n-1.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dest.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack)
            );
        }
    }
    dest
}

/// Sets `n` bytes at `dest` to the low byte of `c`.
///
/// # Safety
/// `dest` must be valid for writing `n` bytes.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    let byte = c as u8;
    let (qwords, bytes) = if n >= WIDE { (n / 8, n % 8) } else { (0, n) };
    // SAFETY: the caller guarantees the range; DF is 0 per the SysV ABI; the second
    // instruction continues where the first stopped.
    unsafe {
        asm!(
            "rep stosq",
            "mov rcx, {bytes}",
            "rep stosb",
            bytes = in(reg) bytes,
            inout("rcx") qwords => _,
            inout("rdi") dest => _,
            in("rax") u64::from(byte) * 0x0101_0101_0101_0101,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// Compares `n` bytes: negative, zero or positive as the first differing byte
/// of `a` is smaller than, equal to or greater than that of `b` (as unsigned).
///
/// # Safety
/// `a` and `b` must be valid for reading `n` bytes.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and the caller guarantees n readable bytes at a and b.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Like [`memcmp`] but only zero / non-zero is meaningful (LLVM emits it for
/// equality comparisons).
///
/// # Safety
/// `a` and `b` must be valid for reading `n` bytes.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { memcmp(a, b, n) }
}

/// The personality routine named by the unwind tables of the precompiled `core`.
/// Never called: everything is built with `panic = "abort"`.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Referenced by the precompiled `alloc` (built with unwinding) on its cleanup paths; never
/// reached with `panic = "abort"`. Halts rather than returning into nowhere.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    loop {
        // SAFETY: stopping the CPU is always sound.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic byte pattern.
    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn copy_and_set() {
        for n in [0usize, 1, 7, 8, 63, 64, 65, 71, 4097] {
            let src = pattern(n, 5);
            let mut dst = vec![0u8; n];
            unsafe { memcpy(dst.as_mut_ptr(), src.as_ptr(), n) };
            assert_eq!(dst, src);
            unsafe { memset(dst.as_mut_ptr(), 0x1A5, n) };
            assert!(dst.iter().all(|&b| b == 0xA5));
        }
    }

    #[test]
    fn move_overlapping_both_ways() {
        for n in [1usize, 2, 15, 64, 100, 203] {
            for shift in [1usize, 3, 8, n] {
                let orig = pattern(n + shift, 9);
                // Forward overlap: dest < src.
                let mut buf = orig.clone();
                unsafe { memmove(buf.as_mut_ptr(), buf.as_ptr().add(shift), n) };
                assert_eq!(&buf[..n], &orig[shift..shift + n]);
                // Backward overlap: dest > src.
                let mut buf = orig.clone();
                unsafe { memmove(buf.as_mut_ptr().add(shift), buf.as_ptr(), n) };
                assert_eq!(&buf[shift..shift + n], &orig[..n]);
                // The direction flag is clear again: a following forward copy works.
                let mut dst = vec![0u8; n];
                unsafe { memcpy(dst.as_mut_ptr(), orig.as_ptr(), n) };
                assert_eq!(dst, &orig[..n]);
            }
        }
    }

    #[test]
    fn compare() {
        let a = b"abcdef";
        let b = b"abcdxf";
        unsafe {
            assert_eq!(memcmp(a.as_ptr(), b.as_ptr(), 4), 0);
            assert!(memcmp(a.as_ptr(), b.as_ptr(), 6) < 0);
            assert!(memcmp(b.as_ptr(), a.as_ptr(), 6) > 0);
            assert!(memcmp([0x80u8].as_ptr(), [0x7fu8].as_ptr(), 1) > 0);
            assert_eq!(bcmp(a.as_ptr(), a.as_ptr(), 6), 0);
            assert_ne!(bcmp(a.as_ptr(), b.as_ptr(), 6), 0);
            assert_eq!(memcmp(a.as_ptr(), b.as_ptr(), 0), 0);
        }
    }
}
