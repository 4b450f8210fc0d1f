//! Base revision 5's local APIC state at a Limine kernel's entry (limine-protocol PROTOCOL.md,
//! "Machine State at Entry", x86-64): enabled in IA32_APIC_BASE and in the SVR, SVR 0x1FF,
//! TPR 0, and every LVT entry whose delivery mode is Fixed, Lowest Priority, NMI or ExtINT masked
//! (the rest of each entry as the firmware left it). Register offsets: Intel SDM Vol. 3A §11.4.1
//! Table 11-1 (xAPIC MMIO) and §11.12.1.2 Table 11-6 (x2APIC MSR = 0x800 + offset / 16).

/// IA32_APIC_BASE (SDM Vol. 3A §11.4.4): bit 11 the global enable, bit 10 x2APIC mode.
const IA32_APIC_BASE: u32 = 0x1B;
const APIC_ENABLE: u64 = 1 << 11;
const X2APIC_MODE: u64 = 1 << 10;

const VERSION: u32 = 0x30;
const TPR: u32 = 0x80;
const SVR: u32 = 0xF0;
/// The spurious vector 0xFF with the software enable (bit 8), as the protocol sets it.
const SVR_VALUE: u32 = 0x1FF;
/// CMCI, timer, thermal, performance counter, LINT0, LINT1, error; with the lowest "max LVT
/// entry" (version register bits 23:16) each needs to exist.
const LVTS: [(u32, u32); 7] = [
    (0x2F0, 6),
    (0x320, 0),
    (0x330, 5),
    (0x340, 4),
    (0x350, 0),
    (0x360, 0),
    (0x370, 0),
];
const LVT_MASK: u32 = 1 << 16;

/// Whether the entry `lvt` gets its mask bit: delivery mode (bits 10:8) Fixed 0, Lowest
/// Priority 1, NMI 4 or ExtINT 7. The timer and error entries have no delivery mode field
/// (bits 10:8 reserved, 0): Fixed.
pub const fn masked(lvt: u32) -> u32 {
    match (lvt >> 8) & 7 {
        0 | 1 | 4 | 7 => lvt | LVT_MASK,
        _ => lvt,
    }
}

/// Puts the running processor's local APIC in that state.
///
/// # Safety
/// Ring 0, interrupts off; in xAPIC mode the APIC's page must be identity-mapped (both loaders
/// identity-map the low 4 GiB until the hand-off).
pub unsafe fn reset() {
    let base = rdmsr(IA32_APIC_BASE);
    let base = if base & APIC_ENABLE == 0 {
        wrmsr(IA32_APIC_BASE, base | APIC_ENABLE);
        base | APIC_ENABLE
    } else {
        base
    };
    let x2 = base & X2APIC_MODE != 0;
    let mmio = base & 0x000f_ffff_ffff_f000;
    let read = |off: u32| -> u32 {
        if x2 {
            rdmsr(0x800 + off / 16) as u32
        } else {
            core::ptr::read_volatile((mmio + u64::from(off)) as *const u32)
        }
    };
    let write = |off: u32, v: u32| {
        if x2 {
            wrmsr(0x800 + off / 16, u64::from(v));
        } else {
            core::ptr::write_volatile((mmio + u64::from(off)) as *mut u32, v);
        }
    };
    write(SVR, SVR_VALUE);
    write(TPR, 0);
    let max_lvt = (read(VERSION) >> 16) & 0xff;
    for (off, needs) in LVTS {
        // Thermal, performance counter and CMCI exist only from their max-LVT count on.
        if max_lvt >= needs {
            write(off, masked(read(off)));
        }
    }
}

unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack));
    u64::from(hi) << 32 | u64::from(lo)
}

unsafe fn wrmsr(msr: u32, v: u64) {
    core::arch::asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
        options(nostack));
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn fixed_lowest_nmi_and_extint_entries_are_masked_the_rest_left() {
        // LINT0 ExtINT (0x700), LINT1 NMI (0x400), a timer on vector 0x20.
        assert_eq!(masked(0x700), 0x1_0700);
        assert_eq!(masked(0x400), 0x1_0400);
        assert_eq!(masked(0x20), 0x1_0020);
        assert_eq!(masked(0x120), 0x1_0120);
        // SMI (2), INIT (5): left as they are, unmasked stays unmasked.
        assert_eq!(masked(0x200), 0x200);
        assert_eq!(masked(0x500), 0x500);
    }
}
