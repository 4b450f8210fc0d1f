//! A device's register page in memory the loader reaches (physical memory at the platform's
//! `phys_offset`): aligned 32- and 64-bit volatile accesses at offsets into it. Shared by the
//! I/O APIC (`ioapic`) and IOMMU (`iommu`) code.

/// The registers at a base address.
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// The registers at `base` in the loader's address space.
    ///
    /// # Safety
    /// `base` must be a device's register page (4 KiB), mapped, used by nothing else meanwhile;
    /// the offsets used must be its registers' (aligned, inside the page).
    pub unsafe fn new(base: u64) -> Self {
        Self {
            base: base as usize,
        }
    }

    fn at(&self, offset: u64) -> usize {
        self.base + offset as usize
    }

    /// The 32-bit register at `offset`.
    pub fn read32(&mut self, offset: u64) -> u32 {
        // SAFETY: the constructor's contract.
        unsafe { core::ptr::read_volatile(self.at(offset) as *const u32) }
    }

    /// Sets the 32-bit register at `offset`.
    pub fn write32(&mut self, offset: u64, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(self.at(offset) as *mut u32, value) }
    }

    /// The 64-bit register at `offset`.
    pub fn read64(&mut self, offset: u64) -> u64 {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::read_volatile(self.at(offset) as *const u64) }
    }

    /// Sets the 64-bit register at `offset`.
    pub fn write64(&mut self, offset: u64, value: u64) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(self.at(offset) as *mut u64, value) }
    }
}
