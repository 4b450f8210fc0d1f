//! Link arguments for a bootloader_api kernel built for the host target: hvboot-api's kernel.ld
//! (docs/kernel-api.md) with two additions written to OUT_DIR, so the script stays one file:
//! the `.bootloader-config` section kept in the read-only segment (the loader finds it by its
//! section header), and thread-local data in a `PT_TLS` segment inside the data segment
//! (BootInfo.tls_template describes it) instead of discarded; and the large code model's
//! sections with their small-model kin.
use std::path::PathBuf;

fn main() {
    let base = std::env::var("DEP_HVBOOT_API_LINKER_SCRIPT").expect("hvboot-api is a dependency");
    let text = std::fs::read_to_string(&base).expect("hvboot-api's kernel.ld");
    let edits = [
        (
            "    data   PT_LOAD FLAGS(6);   /* PF_R | PF_W */\n",
            "    data   PT_LOAD FLAGS(6);   /* PF_R | PF_W */\n    tls    PT_TLS FLAGS(4);\n",
        ),
        (
            "    .data.rel.ro : {\n",
            "    .bootloader-config : { KEEP(*(.bootloader-config)) } :rodata\n\n    .data.rel.ro : {\n",
        ),
        (
            "    .data ALIGN(4K) : {\n        __data_start = .;\n        *(.data .data.*)\n    } :data\n",
            "    .data ALIGN(4K) : {\n        __data_start = .;\n        *(.data .data.*)\n    } :data\n\n    \
             .tdata : { __tdata_start = .; KEEP(*(.tdata .tdata.*)) __tdata_end = .; } :data :tls\n    \
             .tbss : { KEEP(*(.tbss .tbss.*)) __tbss_end = .; } :data :tls\n",
        ),
        ("        *(.tdata .tdata.* .tbss .tbss.*)\n", ""),
        // The large code model's sections (rust-osdev's higher_half kernel is built with it).
        ("*(.text._start)", "*(.text._start .ltext._start)"),
        ("*(.text .text.*)", "*(.text .text.* .ltext .ltext.*)"),
        ("*(.rodata .rodata.*)", "*(.rodata .rodata.* .lrodata .lrodata.*)"),
        ("*(.data .data.*)", "*(.data .data.* .ldata .ldata.*)"),
        ("*(.bss .bss.*)", "*(.bss .bss.* .lbss .lbss.*)"),
    ];
    let mut script = text.clone();
    // Where rust-osdev's higher_half kernel is linked (tests/rust_osdev.py sets it).
    println!("cargo:rerun-if-env-changed=HVBOOT_KERNEL_BASE");
    if let Ok(base) = std::env::var("HVBOOT_KERNEL_BASE") {
        let from = "KERNEL_VIRT_BASE = 0xffffffff80000000;";
        assert!(
            script.contains(from),
            "kernel.ld changed: no KERNEL_VIRT_BASE"
        );
        script = script.replacen(from, &format!("KERNEL_VIRT_BASE = {};", base), 1);
    }
    for (from, to) in edits {
        // Not `{from:?}`: the script also builds rust-osdev's edition-2018 test kernels.
        assert!(
            script.contains(from),
            "kernel.ld changed: {:?} not found",
            from
        );
        script = script.replacen(from, to, 1);
    }
    // A position-independent kernel (tests/rust_osdev.py's PIE crates): linked as a static PIE
    // in the linker's own layout at address 0, as rust-lld links `x86_64-unknown-none` kernels
    // (rustc passes -static-pie for relocation-model=pie with crt-static); no script, which
    // would drop the dynamic section the loader relocates with.
    println!("cargo:rerun-if-env-changed=HVBOOT_KERNEL_PIE");
    if std::env::var_os("HVBOOT_KERNEL_PIE").is_some() {
        for arg in [
            "-nostartfiles",
            "-nostdlib",
            "-Wl,--build-id=none",
            "-Wl,--no-dynamic-linker",
            "-Wl,-z,text",
            "-Wl,-z,max-page-size=0x1000",
            "-Wl,-z,separate-code",
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("bootapi.ld");
    std::fs::write(&out, script).unwrap();
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=0x1000",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", out.display());
    println!("cargo:rerun-if-changed={base}");
}
