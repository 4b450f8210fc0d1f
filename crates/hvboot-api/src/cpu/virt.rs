//! The virtualization report ([`VirtReport`]): what the CPU offers a
//! hypervisor, from CPUID and a few MSRs.
//!
//! Split so that the decisions are testable on the host:
//!
//! - [`CpuidLeaves`] holds the raw CPUID values that matter
//!   ([`CpuidLeaves::read`] executes CPUID, [`CpuidLeaves::from_fn`] takes
//!   them from anywhere, e.g. a test table);
//! - [`MsrPlan::for_cpu`] says which MSRs exist on that CPU (reading one that
//!   does not exist raises #GP);
//! - [`MsrValues`] holds what was read ([`read_msrs`] reads them, ring 0);
//! - [`report`] turns both into a [`VirtReport`]: a pure function.
//!
//! [`detect`] does all of it on the running CPU. The loader fills
//! `BootInfo.virt` with the same code.
//!
//! Sources: Intel SDM Vol. 2A (CPUID leaves 0, 1, 15h, 16h), Vol. 3C §24.6–24.7
//! and appendix A (IA32_FEATURE_CONTROL, IA32_VMX_PROCBASED_CTLS/2,
//! IA32_VMX_EPT_VPID_CAP); AMD APM Vol. 2 §15.4 and §15.30 (SVM, VM_CR), Vol. 3
//! appendix E (CPUID 8000_0001h, 8000_0007h, 8000_0008h, 8000_000Ah).

use crate::protocol::{VirtFlags, VirtReport};

/// IA32_FEATURE_CONTROL.
pub const MSR_FEATURE_CONTROL: u32 = 0x3a;
/// IA32_FEATURE_CONTROL bit 0: locked (writes #GP until reset).
pub const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
/// IA32_FEATURE_CONTROL bit 2: VMXON allowed outside SMX.
pub const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
/// IA32_VMX_PROCBASED_CTLS (allowed-1 settings in bits 63:32).
pub const MSR_VMX_PROCBASED_CTLS: u32 = 0x482;
/// IA32_VMX_PROCBASED_CTLS2 (allowed-1 settings in bits 63:32).
pub const MSR_VMX_PROCBASED_CTLS2: u32 = 0x48b;
/// IA32_VMX_EPT_VPID_CAP.
pub const MSR_VMX_EPT_VPID_CAP: u32 = 0x48c;
/// VM_CR (AMD).
pub const MSR_VM_CR: u32 = 0xc001_0114;
/// VM_CR bit 4: SVM disabled (by firmware).
pub const VM_CR_SVMDIS: u64 = 1 << 4;

/// A CPUID result: EAX, EBX, ECX, EDX.
pub type Regs = [u32; 4];

const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

/// The CPUID leaves the report needs, all zero where the CPU does not have
/// the leaf (the maximum leaves are checked first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidLeaves {
    /// Leaf 0: maximum basic leaf, vendor.
    pub leaf_0: Regs,
    /// Leaf 1: feature bits (VMX, x2APIC, hypervisor).
    pub leaf_1: Regs,
    /// Leaf 15h: TSC/crystal ratio and crystal frequency.
    pub leaf_15: Regs,
    /// Leaf 16h: processor base frequency in MHz.
    pub leaf_16: Regs,
    /// Leaf 8000_0000h: maximum extended leaf.
    pub ext_0: Regs,
    /// Leaf 8000_0001h: SVM, 1 GiB pages.
    pub ext_1: Regs,
    /// Leaf 8000_0007h: invariant TSC.
    pub ext_7: Regs,
    /// Leaf 8000_0008h: address sizes.
    pub ext_8: Regs,
    /// Leaf 8000_000Ah: SVM revision, ASIDs, features (NPT).
    pub ext_a: Regs,
}

impl CpuidLeaves {
    /// The leaves from `cpuid(leaf, subleaf)`, asking only for leaves the
    /// maximum-leaf values say exist.
    pub fn from_fn(mut cpuid: impl FnMut(u32, u32) -> Regs) -> Self {
        let leaf_0 = cpuid(0, 0);
        let max = leaf_0[EAX];
        let ext_0 = cpuid(0x8000_0000, 0);
        // Some CPUs return garbage for 8000_0000h; a real maximum is 8000_00xxh.
        let max_ext = if ext_0[EAX] & 0xffff_0000 == 0x8000_0000 {
            ext_0[EAX]
        } else {
            0
        };
        let mut basic = |leaf: u32| if max >= leaf { cpuid(leaf, 0) } else { [0; 4] };
        let leaf_1 = basic(1);
        let leaf_15 = basic(0x15);
        let leaf_16 = basic(0x16);
        let mut ext = |leaf: u32| {
            if max_ext >= leaf {
                cpuid(leaf, 0)
            } else {
                [0; 4]
            }
        };
        let ext_1 = ext(0x8000_0001);
        let ext_7 = ext(0x8000_0007);
        let ext_8 = ext(0x8000_0008);
        // Leaf 8000_000Ah is defined only when SVM is present (APM Vol. 3, E.4.9).
        let ext_a = if ext_1[ECX] & (1 << 2) != 0 {
            ext(0x8000_000a)
        } else {
            [0; 4]
        };
        Self {
            leaf_0,
            leaf_1,
            leaf_15,
            leaf_16,
            ext_0,
            ext_1,
            ext_7,
            ext_8,
            ext_a,
        }
    }

    /// The leaves of the running CPU.
    pub fn read() -> Self {
        Self::from_fn(|leaf, sub| {
            let (a, b, c, d) = super::cpuid(leaf, sub);
            [a, b, c, d]
        })
    }

    /// The vendor string ("AuthenticAMD", "GenuineIntel", ...).
    pub fn vendor(&self) -> [u8; 12] {
        let mut v = [0u8; 12];
        v[0..4].copy_from_slice(&self.leaf_0[EBX].to_le_bytes());
        v[4..8].copy_from_slice(&self.leaf_0[EDX].to_le_bytes());
        v[8..12].copy_from_slice(&self.leaf_0[ECX].to_le_bytes());
        v
    }

    /// Intel VMX (CPUID.1:ECX[5]).
    pub fn vmx(&self) -> bool {
        self.leaf_1[ECX] & (1 << 5) != 0
    }

    /// Intel SMX (CPUID.1:ECX[6]).
    pub fn smx(&self) -> bool {
        self.leaf_1[ECX] & (1 << 6) != 0
    }

    /// AMD SVM (CPUID.8000_0001h:ECX[2]).
    pub fn svm(&self) -> bool {
        self.ext_1[ECX] & (1 << 2) != 0
    }

    /// The initial APIC ID of this CPU (CPUID.1:EBX[31:24]; 8 bits, so for
    /// x2APIC IDs above 255 use CPUID leaf 0Bh).
    pub fn initial_apic_id(&self) -> u32 {
        self.leaf_1[EBX] >> 24
    }
}

/// Which MSRs exist on a CPU, going by its CPUID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsrPlan {
    /// IA32_FEATURE_CONTROL: architectural when CPUID reports VMX or SMX.
    pub feature_control: bool,
    /// IA32_VMX_PROCBASED_CTLS (and, if its bit 63 allows secondary controls,
    /// IA32_VMX_PROCBASED_CTLS2): with VMX.
    pub vmx_controls: bool,
    /// VM_CR: with SVM.
    pub vm_cr: bool,
}

impl MsrPlan {
    /// The MSRs that exist on the CPU with these CPUID leaves.
    pub fn for_cpu(leaves: &CpuidLeaves) -> Self {
        Self {
            feature_control: leaves.vmx() || leaves.smx(),
            vmx_controls: leaves.vmx(),
            vm_cr: leaves.svm(),
        }
    }
}

/// Raw MSR values; None for an MSR that was not read (absent or not asked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsrValues {
    /// IA32_FEATURE_CONTROL as found.
    pub feature_control_before: Option<u64>,
    /// IA32_FEATURE_CONTROL after [`enable_vmx_if_unlocked`] (or as found).
    pub feature_control_after: Option<u64>,
    /// IA32_VMX_PROCBASED_CTLS.
    pub vmx_procbased_ctls: Option<u64>,
    /// IA32_VMX_PROCBASED_CTLS2 (read only when secondary controls are allowed).
    pub vmx_procbased_ctls2: Option<u64>,
    /// IA32_VMX_EPT_VPID_CAP (read only when EPT or VPID is allowed).
    pub vmx_ept_vpid_cap: Option<u64>,
    /// VM_CR.
    pub vm_cr: Option<u64>,
    /// Whether the loader (or kernel) set and locked IA32_FEATURE_CONTROL.
    pub vmx_enabled_here: bool,
}

/// Bit 63 of IA32_VMX_PROCBASED_CTLS: "activate secondary controls" may be 1.
const PROCBASED_SECONDARY_ALLOWED: u64 = 1 << 63;
/// IA32_VMX_PROCBASED_CTLS2 allowed-1 of "enable EPT" (control bit 1).
const PROCBASED2_EPT_ALLOWED: u64 = 1 << (32 + 1);
/// IA32_VMX_PROCBASED_CTLS2 allowed-1 of "enable VPID" (control bit 5).
const PROCBASED2_VPID_ALLOWED: u64 = 1 << (32 + 5);

impl MsrValues {
    fn secondary_allowed(&self) -> bool {
        self.vmx_procbased_ctls
            .is_some_and(|v| v & PROCBASED_SECONDARY_ALLOWED != 0)
    }

    /// EPT may be enabled.
    pub fn ept(&self) -> bool {
        self.secondary_allowed()
            && self
                .vmx_procbased_ctls2
                .is_some_and(|v| v & PROCBASED2_EPT_ALLOWED != 0)
    }

    /// VPID may be enabled.
    pub fn vpid(&self) -> bool {
        self.secondary_allowed()
            && self
                .vmx_procbased_ctls2
                .is_some_and(|v| v & PROCBASED2_VPID_ALLOWED != 0)
    }
}

/// Reads the MSRs that `plan` says exist; the VMX capability MSRs in the
/// order the SDM makes them conditional (CTLS2 only if CTLS allows secondary
/// controls, EPT_VPID_CAP only if CTLS2 allows EPT or VPID).
///
/// # Safety
/// Ring 0 only, with `plan` computed for this CPU.
pub unsafe fn read_msrs(plan: &MsrPlan) -> MsrValues {
    // SAFETY (every read): the plan says the MSR exists; the caller runs in ring 0.
    read_msrs_with(plan, |msr| unsafe { super::rdmsr(msr) })
}

/// [`read_msrs`] through any `rdmsr` (a loader's CPU interface, a test's table); `rdmsr` is
/// asked only for MSRs the plan says exist.
pub fn read_msrs_with(plan: &MsrPlan, mut rdmsr: impl FnMut(u32) -> u64) -> MsrValues {
    let mut v = MsrValues::default();
    if plan.feature_control {
        let fc = rdmsr(MSR_FEATURE_CONTROL);
        v.feature_control_before = Some(fc);
        v.feature_control_after = Some(fc);
    }
    if plan.vmx_controls {
        v.vmx_procbased_ctls = Some(rdmsr(MSR_VMX_PROCBASED_CTLS));
        if v.secondary_allowed() {
            v.vmx_procbased_ctls2 = Some(rdmsr(MSR_VMX_PROCBASED_CTLS2));
            if v.ept() || v.vpid() {
                v.vmx_ept_vpid_cap = Some(rdmsr(MSR_VMX_EPT_VPID_CAP));
            }
        }
    }
    if plan.vm_cr {
        v.vm_cr = Some(rdmsr(MSR_VM_CR));
    }
    v
}

/// What [`enable_vmx_if_unlocked`] would write to IA32_FEATURE_CONTROL, given
/// its current value: None when it is locked already (nothing can be
/// written) or VMX is absent. Never a value that locks VMX off.
pub fn feature_control_to_write(vmx: bool, current: u64) -> Option<u64> {
    if !vmx || current & FEATURE_CONTROL_LOCK != 0 {
        return None;
    }
    Some(current | FEATURE_CONTROL_VMX_OUTSIDE_SMX | FEATURE_CONTROL_LOCK)
}

/// If this CPU has VMX and IA32_FEATURE_CONTROL is unlocked, sets
/// VMX-outside-SMX and the lock bit (the MSR is per logical CPU: the loader
/// does this on every CPU). Updates `msrs`.
///
/// # Safety
/// Ring 0 only; `msrs` read on this CPU by [`read_msrs`].
pub unsafe fn enable_vmx_if_unlocked(leaves: &CpuidLeaves, msrs: &mut MsrValues) {
    // SAFETY: the MSR exists (it was read) and is unlocked when written; setting bits 2 and 0
    // is what the SDM (Vol. 3C §24.7) describes for system software.
    enable_vmx_with(
        leaves,
        msrs,
        |msr| unsafe { super::rdmsr(msr) },
        |msr, value| unsafe { super::wrmsr(msr, value) },
    )
}

/// [`enable_vmx_if_unlocked`] through any `rdmsr` / `wrmsr` (they are called only for
/// IA32_FEATURE_CONTROL, and only when it exists and is unlocked).
pub fn enable_vmx_with(
    leaves: &CpuidLeaves,
    msrs: &mut MsrValues,
    mut rdmsr: impl FnMut(u32) -> u64,
    mut wrmsr: impl FnMut(u32, u64),
) {
    let Some(current) = msrs.feature_control_before else {
        return;
    };
    if let Some(value) = feature_control_to_write(leaves.vmx(), current) {
        wrmsr(MSR_FEATURE_CONTROL, value);
        msrs.feature_control_after = Some(rdmsr(MSR_FEATURE_CONTROL));
        msrs.vmx_enabled_here = true;
    }
}

/// The TSC frequency in Hz from CPUID, or 0 if CPUID does not say:
/// leaf 15h (crystal Hz * EBX / EAX) when it enumerates the crystal, else
/// leaf 16h's base frequency (MHz), which equals the TSC rate on the Intel
/// CPUs that have it but no crystal value.
pub fn tsc_frequency_hz(leaves: &CpuidLeaves) -> u64 {
    let [denominator, numerator, crystal_hz, _] = leaves.leaf_15;
    if denominator != 0 && numerator != 0 && crystal_hz != 0 {
        return u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator);
    }
    u64::from(leaves.leaf_16[EAX] & 0xffff) * 1_000_000
}

/// The report from raw CPUID leaves and MSR values: a pure function.
pub fn report(leaves: &CpuidLeaves, msrs: &MsrValues) -> VirtReport {
    let bit = |reg: u32, n: u32| reg & (1 << n) != 0;
    let svm = leaves.svm();
    let vmx = leaves.vmx();
    let mut flags = VirtFlags::VALID
        .with(VirtFlags::VMX, vmx)
        .with(VirtFlags::SVM, svm)
        .with(VirtFlags::EPT, vmx && msrs.ept())
        .with(VirtFlags::VPID, vmx && msrs.vpid())
        .with(VirtFlags::NPT, svm && bit(leaves.ext_a[EDX], 0))
        .with(VirtFlags::GIB_PAGES, bit(leaves.ext_1[EDX], 26))
        .with(VirtFlags::X2APIC, bit(leaves.leaf_1[ECX], 21))
        .with(VirtFlags::INVARIANT_TSC, bit(leaves.ext_7[EDX], 8))
        .with(VirtFlags::HYPERVISOR, bit(leaves.leaf_1[ECX], 31))
        .with(VirtFlags::VMX_ENABLED_BY_LOADER, msrs.vmx_enabled_here);
    flags = flags
        .with(
            VirtFlags::FEATURE_CONTROL_READ,
            msrs.feature_control_before.is_some(),
        )
        .with(VirtFlags::VM_CR_READ, msrs.vm_cr.is_some())
        .with(
            VirtFlags::EPT_VPID_CAP_READ,
            msrs.vmx_ept_vpid_cap.is_some(),
        );
    let (phys_bits, linear_bits) = if leaves.ext_8[EAX] != 0 {
        (
            (leaves.ext_8[EAX] & 0xff) as u8,
            ((leaves.ext_8[EAX] >> 8) & 0xff) as u8,
        )
    } else {
        // Without leaf 8000_0008h: 36 bits with PAE (SDM Vol. 3A §4.1.4), 48 linear.
        (36, 48)
    };
    VirtReport {
        vendor: leaves.vendor(),
        flags,
        max_phys_addr_bits: phys_bits,
        max_linear_addr_bits: linear_bits,
        svm_revision: if svm {
            (leaves.ext_a[EAX] & 0xff) as u8
        } else {
            0
        },
        reserved: 0,
        svm_asids: if svm { leaves.ext_a[EBX] } else { 0 },
        feature_control_before: msrs.feature_control_before.unwrap_or(0),
        feature_control_after: msrs.feature_control_after.unwrap_or(0),
        vm_cr: msrs.vm_cr.unwrap_or(0),
        vmx_ept_vpid_cap: msrs.vmx_ept_vpid_cap.unwrap_or(0),
        tsc_frequency_hz: tsc_frequency_hz(leaves),
    }
}

/// The report for the running CPU; with `enable_vmx`, sets and locks
/// IA32_FEATURE_CONTROL first if it is unlocked (see [`enable_vmx_if_unlocked`]).
///
/// # Safety
/// Ring 0 only (it reads MSRs).
pub unsafe fn detect(enable_vmx: bool) -> VirtReport {
    let leaves = CpuidLeaves::read();
    // SAFETY: the plan is for this CPU; the caller is in ring 0.
    let mut msrs = unsafe { read_msrs(&MsrPlan::for_cpu(&leaves)) };
    if enable_vmx {
        // SAFETY: as above.
        unsafe { enable_vmx_if_unlocked(&leaves, &mut msrs) };
    }
    report(&leaves, &msrs)
}

impl VirtReport {
    /// The vendor as text ("" if not ASCII).
    pub fn vendor_str(&self) -> &str {
        let end = self.vendor.iter().position(|&b| b == 0).unwrap_or(12);
        core::str::from_utf8(&self.vendor[..end]).unwrap_or("")
    }

    /// SVM is present but firmware disabled it (VM_CR.SVMDIS).
    pub fn svm_disabled_by_firmware(&self) -> bool {
        self.flags.contains(VirtFlags::VM_CR_READ) && self.vm_cr & VM_CR_SVMDIS != 0
    }

    /// VMX is present, but IA32_FEATURE_CONTROL is locked with VMX-outside-SMX
    /// off, so VMXON will fault until the next reset.
    pub fn vmx_locked_off(&self) -> bool {
        let fc = self.feature_control_after;
        self.flags.contains(VirtFlags::FEATURE_CONTROL_READ)
            && fc & FEATURE_CONTROL_LOCK != 0
            && fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0
    }

    /// Whether a hypervisor can start a guest with hardware-assisted paging
    /// (SVM+NPT not disabled by firmware, or VMX+EPT not locked off).
    pub fn can_run_guests_with_nested_paging(&self) -> bool {
        let f = self.flags;
        (f.contains(VirtFlags::SVM | VirtFlags::NPT) && !self.svm_disabled_by_firmware())
            || (f.contains(VirtFlags::VMX | VirtFlags::EPT) && !self.vmx_locked_off())
    }
}

#[cfg(test)]
mod tests;
