//! The flow for a Linux bzImage (docs/linux.md): placed (the protected-mode kernel at its
//! preferred or an aligned address, the modules concatenated into one initrd), the firmware
//! surveyed, the setup header copied for boot_params; no address space of hvboot's and no CPU
//! start-up (Linux builds its own tables and starts its own processors).

use hvboot_api::TscStage;

use super::{firmware, hand_off, inputs, phys_slice, place, stamps_from};
use super::{Boot, Cpu, Error, Platform};
use crate::handoff::Handoff;
use crate::linux::{check_cmdline, HEADER_START};
use crate::protocols::linux::Linux;

/// Boots the Linux kernel of `inputs` (its kind is `KernelKind::Linux`).
pub fn run<P: Platform, C: Cpu>(
    p: &mut P,
    cpu: &C,
    inputs: inputs::Inputs,
    tsc_start: u64,
) -> Result<Handoff, Error> {
    let Some(plan) = inputs.kernel.linux() else {
        unreachable!("linux::run is called for Linux kernels only")
    };
    let h = plan.header;
    check_cmdline(&h, &inputs.config.cmdline).map_err(|why| Error::Linux {
        kernel: inputs.kernel.path.clone(),
        why,
    })?;
    // SAFETY: read_file filled the kernel's pages; `linux::check` saw the header within them.
    let file = unsafe { phys_slice(p, inputs.kernel.file_phys, inputs.kernel.file_len) };
    let header = file[HEADER_START..HEADER_START + h.header_len].to_vec();

    let mut stamps = stamps_from(tsc_start);
    let placed = place::place(p, &inputs)?;
    stamps[TscStage::FILES_READ.0 as usize] = cpu.rdtsc();
    let firmware = firmware::survey(p, &inputs)?;
    // Linux reads ACPI through acpi_rsdp_addr and calibrates its own TSC.
    let boot = Boot::without_address_space::<P>(inputs, placed, firmware, stamps);
    hand_off::hand_off(p, cpu, &mut Linux::new(header), boot)
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeCpu, FakePlatform, RAM_END};
    use super::super::{boot, Platform, CONFIG_PATH};
    use crate::handoff::EntryMode;
    use crate::paging;
    use crate::testing::linux::bzimage;

    const KERNEL: &str = "/hvboot/kernel.elf";

    fn machine(kernel: alloc::vec::Vec<u8>, cmdline: &str) -> FakePlatform {
        let cfg = alloc::format!(
            "hvboot-config 1\nkernel {KERNEL}\ncmdline {cmdline}\nmodule /m/a\nmodule-name a\n\
             module /m/b\nmodule-name b\n"
        );
        let mut p = FakePlatform::new();
        p.file(CONFIG_PATH, cfg)
            .file(KERNEL, kernel)
            .file("/m/a", &b"first part "[..])
            .file("/m/b", &b"second part"[..]);
        p
    }

    fn u32_at(b: &[u8], at: usize) -> u64 {
        u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()))
    }

    /// A crafted bzImage through the whole flow: boot_params as boot.rst says, the initrd the
    /// modules in order, the entry at + 0x200 on tables that identity-map what Linux reads.
    #[test]
    fn linux_kernel_hand_off() {
        let mut kernel = bzimage();
        kernel[0x1000 + 0x200..0x1000 + 0x204].copy_from_slice(b"\xfa\xf4go");
        let mut p = machine(kernel, "console=ttyS0 x=1");
        let h = boot(&mut p, &FakeCpu::new(true), 1).unwrap();
        assert!(p.exited);
        assert_eq!(h.mode, EntryMode::Linux);
        let load = h.entry - 0x200;
        assert!(load.is_multiple_of(2 << 20), "{load:#x}");
        assert_eq!(p.bytes(h.entry, 4), b"\xfa\xf4go");
        let bp = p.bytes(h.boot_info, 4096).to_vec();
        assert_eq!(&bp[0x202..0x206], b"HdrS", "the setup header copied");
        assert_eq!(bp[0x210], 0xff, "type_of_loader");
        let cmd = u32_at(&bp, 0x228) | u32_at(&bp, 0xc8) << 32;
        assert_eq!(p.bytes(cmd, 18), b"console=ttyS0 x=1\0");
        let (rd, rd_len) = (u32_at(&bp, 0x218), u32_at(&bp, 0x21c));
        assert_eq!(p.bytes(rd, rd_len), b"first part second part");
        assert!(rd + rd_len <= 0x7fff_ffff + 1);
        assert_ne!(
            u64::from_le_bytes(bp[0x70..0x78].try_into().unwrap()),
            0,
            "RSDP"
        );
        let n = usize::from(bp[0x1e8]);
        let e820: alloc::vec::Vec<(u64, u64, u32)> = (0..n)
            .map(|i| {
                let e = &bp[0x2d0 + i * 20..0x2d0 + (i + 1) * 20];
                let q = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().unwrap());
                (
                    q(0),
                    q(8),
                    u32::from_le_bytes(e[16..20].try_into().unwrap()),
                )
            })
            .collect();
        assert!(e820.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
        let top = e820.iter().filter(|e| e.2 == 1).map(|e| e.0 + e.1).max();
        assert_eq!(top, Some(RAM_END), "{e820:x?}");
        for addr in [h.entry, h.boot_info, cmd, rd, h.stack_top - 8, 0xffff_f000] {
            // SAFETY: the tables live in the arena, reached at the platform's offset.
            let t = unsafe { paging::translate(p.phys_offset(), h.cr3, addr) };
            assert_eq!(t.map(|t| t.phys), Some(addr), "{addr:#x} identity-mapped");
        }
    }

    /// The initrd's parts are checked against their pins and measured like any module (they
    /// were neither before measured boot): a replaced part is refused by name before the
    /// firmware is left; with a TPM each part's BLAKE3 digest goes into PCR 9 in order.
    #[test]
    fn initrd_parts_are_pinned_and_measured() {
        use crate::digest::Digest;
        let pinned = |p: &mut FakePlatform| {
            let cfg = alloc::format!(
                "hvboot-config 1\nkernel {KERNEL}\nmodule /m/a\nmodule-blake3 {}\n\
                 module /m/b\nmodule-blake3 {}\n",
                Digest::of(b"first part "),
                Digest::of(b"second part")
            );
            p.file(CONFIG_PATH, cfg);
        };
        let mut p = machine(bzimage(), "");
        pinned(&mut p);
        p.file("/m/b", &b"second PART"[..]);
        let e = boot(&mut p, &FakeCpu::new(true), 1).unwrap_err();
        assert!(!p.exited);
        assert_eq!(
            e.to_string(),
            alloc::format!(
                "/m/b: blake3 mismatch: expected {}, got {}",
                Digest::of(b"second part"),
                Digest::of(b"second PART")
            )
        );
        let mut p = machine(bzimage(), "");
        pinned(&mut p);
        p.tpm = Some(alloc::vec::Vec::new());
        boot(&mut p, &FakeCpu::new(true), 1).unwrap();
        let files: alloc::vec::Vec<_> = p.tpm.take().unwrap().into_iter().skip(3).collect();
        let part = |b: &[u8], path: &str| {
            (
                hvboot_api::TPM_PCR_FILES,
                Digest::of(b).0.to_vec(),
                path.as_bytes().to_vec(),
            )
        };
        assert_eq!(
            files,
            [part(b"first part ", "/m/a"), part(b"second part", "/m/b")]
        );
    }

    /// A command line longer than the kernel's cmdline_size is refused before the firmware is
    /// left, naming the field.
    #[test]
    fn a_command_line_past_cmdline_size_is_refused() {
        let mut kernel = bzimage();
        kernel[0x238..0x23c].copy_from_slice(&4u32.to_le_bytes());
        let mut p = machine(kernel, "console=ttyS0");
        let e = boot(&mut p, &FakeCpu::new(true), 1)
            .unwrap_err()
            .to_string();
        assert!(!p.exited);
        assert_eq!(
            e,
            "/hvboot/kernel.elf: setup header cmdline_size: the command line is 13 bytes, the \
             kernel takes at most 4"
        );
    }
}
