//! Host tests of the virtualization report with synthetic CPUID tables
//! modelled on what QEMU's TCG models report.

use super::*;

/// Vendor registers (EBX, EDX, ECX) for a 12-byte vendor string.
fn vendor_regs(max: u32, s: &[u8; 12]) -> Regs {
    let w = |i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap());
    [max, w(0), w(8), w(4)]
}

/// A CPUID function from a table of (leaf, regs); absent leaves read as zero.
fn table(entries: &[(u32, Regs)]) -> impl FnMut(u32, u32) -> Regs + '_ {
    move |leaf, _| {
        entries
            .iter()
            .find(|(l, _)| *l == leaf)
            .map(|(_, r)| *r)
            .unwrap_or([0; 4])
    }
}

/// An AMD CPU like QEMU's `-cpu max` under TCG: SVM with NPT, 1 GiB pages.
fn amd_max() -> CpuidLeaves {
    CpuidLeaves::from_fn(table(&[
        (0, vendor_regs(0xd, b"AuthenticAMD")),
        (
            1,
            [0x0663, 0x0001_0800, 0x8000_2001 | (1 << 31), 0x0789_fbff],
        ),
        (0x8000_0000, [0x8000_000a, 0, 0, 0]),
        (0x8000_0001, [0, 0, 1 << 2, 1 << 26]),
        (0x8000_0008, [0x3028, 0, 0, 0]),
        (0x8000_000a, [1, 16, 0, 0x1001_0001]),
    ]))
}

#[test]
fn amd_with_npt() {
    let leaves = amd_max();
    let plan = MsrPlan::for_cpu(&leaves);
    assert_eq!(
        plan,
        MsrPlan {
            feature_control: false,
            vmx_controls: false,
            vm_cr: true
        }
    );
    let msrs = MsrValues {
        vm_cr: Some(0),
        ..Default::default()
    };
    let r = report(&leaves, &msrs);
    assert_eq!(r.vendor_str(), "AuthenticAMD");
    assert!(r.flags.contains(
        VirtFlags::VALID
            | VirtFlags::SVM
            | VirtFlags::NPT
            | VirtFlags::GIB_PAGES
            | VirtFlags::HYPERVISOR
            | VirtFlags::VM_CR_READ
    ));
    assert!(!r.flags.contains(VirtFlags::VMX));
    assert!(!r.flags.contains(VirtFlags::X2APIC));
    assert!(!r.flags.contains(VirtFlags::FEATURE_CONTROL_READ));
    assert_eq!((r.max_phys_addr_bits, r.max_linear_addr_bits), (40, 48));
    assert_eq!((r.svm_revision, r.svm_asids), (1, 16));
    assert_eq!(r.tsc_frequency_hz, 0);
    assert!(r.can_run_guests_with_nested_paging());
    assert!(!r.svm_disabled_by_firmware());
    assert_eq!(leaves.initial_apic_id(), 0);
}

#[test]
fn amd_svm_disabled_by_firmware() {
    let msrs = MsrValues {
        vm_cr: Some(VM_CR_SVMDIS | (1 << 3)),
        ..Default::default()
    };
    let r = report(&amd_max(), &msrs);
    assert!(r.svm_disabled_by_firmware());
    assert!(!r.can_run_guests_with_nested_paging());
    assert_eq!(r.vm_cr, 0x18);
}

#[test]
fn amd_without_npt() {
    // QEMU's qemu64: SVM, no NPT, no 1 GiB pages.
    let leaves = CpuidLeaves::from_fn(table(&[
        (0, vendor_regs(0xd, b"AuthenticAMD")),
        (1, [0x0663, 0, 0x8000_2001, 0]),
        (0x8000_0000, [0x8000_000a, 0, 0, 0]),
        (0x8000_0001, [0, 0, 1 << 2, 0]),
        (0x8000_000a, [1, 16, 0, 0]),
    ]));
    let r = report(&leaves, &MsrValues::default());
    assert!(r.flags.contains(VirtFlags::SVM));
    assert!(!r.flags.contains(VirtFlags::NPT));
    assert!(!r.flags.contains(VirtFlags::GIB_PAGES));
    assert!(!r.can_run_guests_with_nested_paging());
    // No leaf 8000_0008h: the architectural defaults.
    assert_eq!((r.max_phys_addr_bits, r.max_linear_addr_bits), (36, 48));
}

#[test]
fn svm_leaf_not_read_without_svm() {
    // A CPU whose 8000_000Ah leaf holds garbage but has no SVM: the leaf is ignored.
    let leaves = CpuidLeaves::from_fn(table(&[
        (0, vendor_regs(0xd, b"AuthenticAMD")),
        (0x8000_0000, [0x8000_000a, 0, 0, 0]),
        (0x8000_000a, [7, 99, 0, 1]),
    ]));
    assert_eq!(leaves.ext_a, [0; 4]);
    let r = report(&leaves, &MsrValues::default());
    assert!(!r.flags.contains(VirtFlags::NPT));
    assert_eq!((r.svm_revision, r.svm_asids), (0, 0));
}

/// An Intel CPU; `vmx` selects CPUID.1:ECX[5], with TSC leaves 15h/16h.
fn intel(vmx: bool) -> CpuidLeaves {
    let ecx1 = (1 << 21) | if vmx { 1 << 5 } else { 0 };
    CpuidLeaves::from_fn(table(&[
        (0, vendor_regs(0x16, b"GenuineIntel")),
        (1, [0x506e3, 0x0200_0800, ecx1, 0]),
        (0x15, [2, 250, 24_000_000, 0]),
        (0x16, [3000, 3500, 100, 0]),
        (0x8000_0000, [0x8000_0008, 0, 0, 0]),
        (0x8000_0001, [0, 0, 0, 1 << 26]),
        (0x8000_0007, [0, 0, 0, 1 << 8]),
        (0x8000_0008, [0x3027, 0, 0, 0]),
    ]))
}

#[test]
fn intel_without_vmx() {
    // What QEMU's TCG shows for an Intel model: VMX cannot be emulated.
    let leaves = intel(false);
    let plan = MsrPlan::for_cpu(&leaves);
    assert_eq!(plan, MsrPlan::default());
    let r = report(&leaves, &MsrValues::default());
    assert_eq!(r.vendor_str(), "GenuineIntel");
    assert!(!r.flags.contains(VirtFlags::VMX));
    assert!(!r.flags.contains(VirtFlags::SVM));
    assert!(r
        .flags
        .contains(VirtFlags::X2APIC | VirtFlags::INVARIANT_TSC));
    assert_eq!(leaves.initial_apic_id(), 2);
    // 24 MHz crystal * 250 / 2.
    assert_eq!(r.tsc_frequency_hz, 3_000_000_000);
    assert!(!r.can_run_guests_with_nested_paging());
}

#[test]
fn intel_with_vmx_and_ept() {
    let leaves = intel(true);
    assert_eq!(
        MsrPlan::for_cpu(&leaves),
        MsrPlan {
            feature_control: true,
            vmx_controls: true,
            vm_cr: false
        }
    );
    let msrs = MsrValues {
        feature_control_before: Some(0x5),
        feature_control_after: Some(0x5),
        vmx_procbased_ctls: Some(PROCBASED_SECONDARY_ALLOWED | 0x0401_e172),
        vmx_procbased_ctls2: Some(PROCBASED2_EPT_ALLOWED | PROCBASED2_VPID_ALLOWED),
        vmx_ept_vpid_cap: Some(0x0f01_0633_4141),
        ..Default::default()
    };
    let r = report(&leaves, &msrs);
    assert!(r.flags.contains(
        VirtFlags::VMX
            | VirtFlags::EPT
            | VirtFlags::VPID
            | VirtFlags::FEATURE_CONTROL_READ
            | VirtFlags::EPT_VPID_CAP_READ
    ));
    assert!(!r.flags.contains(VirtFlags::VMX_ENABLED_BY_LOADER));
    assert_eq!(r.vmx_ept_vpid_cap, 0x0f01_0633_4141);
    assert!(r.can_run_guests_with_nested_paging());

    // Secondary controls not allowed: no EPT even if CTLS2 claims it.
    let no_secondary = MsrValues {
        vmx_procbased_ctls: Some(0),
        ..msrs
    };
    assert!(!report(&leaves, &no_secondary)
        .flags
        .contains(VirtFlags::EPT));
}

#[test]
fn intel_vmx_locked_off() {
    let msrs = MsrValues {
        feature_control_before: Some(FEATURE_CONTROL_LOCK),
        feature_control_after: Some(FEATURE_CONTROL_LOCK),
        vmx_procbased_ctls: Some(PROCBASED_SECONDARY_ALLOWED),
        vmx_procbased_ctls2: Some(PROCBASED2_EPT_ALLOWED),
        ..Default::default()
    };
    let r = report(&intel(true), &msrs);
    assert!(r.vmx_locked_off());
    assert!(!r.can_run_guests_with_nested_paging());
}

#[test]
fn feature_control_policy() {
    // Unlocked: set VMX outside SMX and lock.
    assert_eq!(feature_control_to_write(true, 0), Some(0x5));
    assert_eq!(feature_control_to_write(true, 0x2), Some(0x7));
    // Locked: nothing can be written.
    assert_eq!(feature_control_to_write(true, 0x1), None);
    assert_eq!(feature_control_to_write(true, 0x5), None);
    // No VMX: never lock the MSR (it would lock VMX off until reset).
    assert_eq!(feature_control_to_write(false, 0), None);
}

#[test]
fn tsc_frequency_sources() {
    let mut l = intel(false);
    l.leaf_15 = [0, 0, 0, 0];
    assert_eq!(tsc_frequency_hz(&l), 3_000_000_000); // leaf 16h: 3000 MHz
    l.leaf_15 = [2, 250, 0, 0]; // crystal not enumerated
    assert_eq!(tsc_frequency_hz(&l), 3_000_000_000);
    l.leaf_16 = [0; 4];
    assert_eq!(tsc_frequency_hz(&l), 0);
}

#[test]
fn leaves_beyond_the_maximum_are_not_read() {
    let mut asked = Vec::new();
    let leaves = CpuidLeaves::from_fn(|leaf, _| {
        asked.push(leaf);
        match leaf {
            0 => vendor_regs(1, b"GenuineIntel"),
            0x8000_0000 => [0x1234, 0, 0, 0], // garbage: no extended leaves
            _ => [0xffff_ffff; 4],
        }
    });
    assert_eq!(asked, [0, 0x8000_0000, 1]);
    assert_eq!(leaves.ext_1, [0; 4]);
    assert!(leaves.vmx()); // leaf 1 is all ones in this table
}
