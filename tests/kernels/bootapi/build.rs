//! Link arguments for a bootloader_api kernel built for the host target: hvboot-api's kernel.ld
//! (docs/kernel-api.md) with two additions written to OUT_DIR, so the script stays one file:
//! the `.bootloader-config` section kept in the read-only segment (the loader finds it by its
//! section header), and thread-local data in a `PT_TLS` segment inside the data segment
//! (BootInfo.tls_template describes it) instead of discarded.
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
    ];
    let mut script = text.clone();
    for (from, to) in edits {
        assert!(
            script.contains(from),
            "kernel.ld changed: {from:?} not found"
        );
        script = script.replacen(from, to, 1);
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
