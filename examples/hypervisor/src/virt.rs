//! What the CPU offers a hypervisor, from CPUID.
//!
//! References: Intel SDM Vol. 2A, CPUID; AMD APM Vol. 3, Appendix E (CPUID)
//! and Vol. 2 §15.4 (enabling SVM).

use hvboot_api::cpu::{cpu_vendor, cpuid};
use hvboot_api::serial_println;

/// The CPU's vendor and virtualization-related features.
#[derive(Clone, Copy, Debug)]
pub struct VirtSupport {
    /// CPUID.0: "GenuineIntel", "AuthenticAMD", ...
    pub vendor: [u8; 12],
    /// CPUID.80000002h..80000004h, NUL padded (empty if not reported).
    pub brand: [u8; 48],
    /// Intel VMX: CPUID.1:ECX[5].
    pub vmx: bool,
    /// AMD SVM: CPUID.80000001h:ECX[2].
    pub svm: bool,
    /// AMD nested paging: CPUID.8000000Ah:EDX[0] (only read when SVM is there).
    pub npt: bool,
    /// SVM revision: CPUID.8000000Ah:EAX[7:0].
    pub svm_revision: u8,
    /// Address-space IDs: CPUID.8000000Ah:EBX.
    pub svm_asids: u32,
    /// Physical-address width: CPUID.80000008h:EAX[7:0] (36 if not reported).
    pub max_phys_addr_bits: u8,
    /// 1 GiB pages: CPUID.80000001h:EDX[26].
    pub gib_pages: bool,
    /// x2APIC: CPUID.1:ECX[21].
    pub x2apic: bool,
    /// Running under a hypervisor: CPUID.1:ECX[31].
    pub hypervisor: bool,
}

/// The text of a NUL-padded CPUID string.
fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("?").trim()
}

const fn bit(value: u32, n: u32) -> bool {
    value & (1 << n) != 0
}

impl VirtSupport {
    /// Reads everything from CPUID, checking the maximum leaves first.
    pub fn detect() -> Self {
        let (max_basic, ..) = cpuid(0, 0);
        let (max_ext, ..) = cpuid(0x8000_0000, 0);
        let has_ext = |leaf: u32| max_ext >= leaf && max_ext <= 0x8000_ffff;
        let (_, _, ecx1, _) = if max_basic >= 1 {
            cpuid(1, 0)
        } else {
            (0, 0, 0, 0)
        };
        let (_, _, ecx_e1, edx_e1) = if has_ext(0x8000_0001) {
            cpuid(0x8000_0001, 0)
        } else {
            (0, 0, 0, 0)
        };
        let max_phys_addr_bits = if has_ext(0x8000_0008) {
            (cpuid(0x8000_0008, 0).0 & 0xff) as u8
        } else {
            36
        };
        let svm = bit(ecx_e1, 2);
        let (svm_eax, svm_ebx, _, svm_edx) = if svm && has_ext(0x8000_000a) {
            cpuid(0x8000_000a, 0)
        } else {
            (0, 0, 0, 0)
        };

        let mut brand = [0u8; 48];
        if has_ext(0x8000_0004) {
            for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
                let (a, b, c, d) = cpuid(leaf, 0);
                for (j, reg) in [a, b, c, d].into_iter().enumerate() {
                    let at = i * 16 + j * 4;
                    brand[at..at + 4].copy_from_slice(&reg.to_le_bytes());
                }
            }
        }

        Self {
            vendor: cpu_vendor(),
            brand,
            vmx: bit(ecx1, 5),
            svm,
            npt: bit(svm_edx, 0),
            svm_revision: (svm_eax & 0xff) as u8,
            svm_asids: svm_ebx,
            max_phys_addr_bits,
            gib_pages: bit(edx_e1, 26),
            x2apic: bit(ecx1, 21),
            hypervisor: bit(ecx1, 31),
        }
    }

    /// Prints the facts, one per line.
    pub fn print(&self) {
        let yes = |b: bool| if b { "yes" } else { "no" };
        serial_println!(
            "cpu:         {} {:?}",
            text(&self.vendor),
            text(&self.brand)
        );
        serial_println!("  under a hypervisor:   {}", yes(self.hypervisor));
        serial_println!("  Intel VMX:            {}", yes(self.vmx));
        serial_println!("  AMD SVM:              {}", yes(self.svm));
        if self.svm {
            serial_println!("  SVM revision:         {}", self.svm_revision);
            serial_println!("  SVM ASIDs:            {}", self.svm_asids);
        }
        serial_println!("  nested paging (NPT):  {}", yes(self.npt));
        serial_println!("  MAXPHYADDR:           {} bits", self.max_phys_addr_bits);
        serial_println!("  1 GiB pages:          {}", yes(self.gib_pages));
        serial_println!("  x2APIC:               {}", yes(self.x2apic));
        let verdict = match (self.svm, self.npt, self.vmx) {
            (true, true, _) => "can run SVM guests with nested paging",
            (true, false, _) => "SVM without nested paging (shadow paging needed)",
            (false, _, true) => "Intel VMX (not supported by this sample yet)",
            _ => "no hardware virtualization",
        };
        serial_println!("  => {verdict}");
    }
}
