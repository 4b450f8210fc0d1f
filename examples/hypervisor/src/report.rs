//! A human-readable report of the boot information.

use hvboot_api::{serial_println, BootInfo, MemoryKind};

const MIB: u64 = 1024 * 1024;

/// Prints loader, firmware, command line, memory map summary, modules,
/// framebuffer and firmware tables.
pub fn boot_info(info: &BootInfo) {
    serial_println!(
        "loader:      {} {}",
        info.loader_name(),
        info.loader_version()
    );
    match info.firmware.name() {
        Some(name) => serial_println!("firmware:    {name}"),
        None => serial_println!("firmware:    unknown ({})", info.firmware.0),
    }
    serial_println!("cmdline:     {:?}", info.cmdline());
    memory_map(info);
    modules(info);
    match info.framebuffer() {
        Some(fb) => serial_println!(
            "framebuffer: {}x{}, {} bpp, pitch {}, format {}, at {:#x}",
            fb.width,
            fb.height,
            fb.bpp,
            fb.pitch,
            fb.format.name().unwrap_or("unknown"),
            fb.phys_addr
        ),
        None => serial_println!("framebuffer: none"),
    }
    if info.rsdp_phys != 0 {
        serial_println!("ACPI RSDP:   {:#x}", info.rsdp_phys);
    } else {
        serial_println!("ACPI RSDP:   none");
    }
    if info.smbios3_entry_phys != 0 || info.smbios_entry_phys != 0 {
        serial_println!(
            "SMBIOS:      2.x at {:#x}, 3.x at {:#x}",
            info.smbios_entry_phys,
            info.smbios3_entry_phys
        );
    }
    serial_println!(
        "kernel:      {:#x} -> phys {:#x}, {} KiB; stack top {:#x} ({} KiB)",
        info.kernel_virt_base,
        info.kernel_phys_base,
        info.kernel_size / 1024,
        info.stack_top,
        info.stack_size / 1024
    );
    serial_println!(
        "direct map:  {:#x}, {} MiB",
        info.direct_map_offset,
        info.direct_map_size / MIB
    );
}

/// Memory-map summary: regions and bytes per kind.
fn memory_map(info: &BootInfo) {
    // Index 0 collects kinds this version does not know.
    const KINDS: usize = 13;
    let mut count = [0u32; KINDS];
    let mut bytes = [0u64; KINDS];
    let map = info.memory_map();
    for r in map {
        let i = if (1..KINDS as u32).contains(&r.kind.0) {
            r.kind.0 as usize
        } else {
            0
        };
        count[i] += 1;
        bytes[i] = bytes[i].saturating_add(r.length);
    }
    serial_println!("memory map:  {} regions", map.len());
    for (i, (&n, &b)) in count.iter().zip(&bytes).enumerate() {
        if n == 0 {
            continue;
        }
        let name = MemoryKind(i as u32).name().unwrap_or("(unknown kinds)");
        serial_println!("  {name:<20} {n:>4} regions {:>8} KiB", b / 1024);
    }
    serial_println!("  usable: {} MiB", info.usable_bytes() / MIB);
}

fn modules(info: &BootInfo) {
    let modules = info.modules();
    serial_println!("modules:     {}", modules.len());
    for (i, m) in modules.iter().enumerate() {
        serial_println!(
            "  [{i}] {:?} at {:#x}, {} bytes, cmdline {:?}",
            info.module_name(m),
            m.phys_addr,
            m.size,
            info.module_cmdline(m)
        );
    }
}
