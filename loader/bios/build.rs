//! Assemble stage 1 (flat, 440 bytes) and stage 2 (ELF object) with NASM, and link the BIOS
//! loader as a static non-PIE executable at 0x8000 with bios.ld. The Python image builder turns
//! the ELF into the flat stage-2 image and takes stage 1 from its `.hvboot.stage1` section.
use std::path::PathBuf;
use std::process::Command;

/// The MBR's boot code area: the partition table starts at byte 440 (disk signature) / 446.
const STAGE1_MAX: u64 = 440;

fn nasm(args: &[&str]) {
    let status = Command::new("nasm")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run nasm (apt-get install nasm): {e}"));
    assert!(status.success(), "nasm {args:?} failed");
}

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let s1_src = dir.join("asm/stage1.asm");
    let s2_src = dir.join("asm/stage2.asm");
    let s1 = out.join("stage1.bin");
    let s2 = out.join("stage2.o");
    nasm(&[
        "-f",
        "bin",
        "-o",
        s1.to_str().unwrap(),
        s1_src.to_str().unwrap(),
    ]);
    let size = std::fs::metadata(&s1).unwrap().len();
    assert!(
        size <= STAGE1_MAX,
        "stage 1 is {size} bytes, more than the {STAGE1_MAX} bytes of MBR boot code"
    );
    nasm(&[
        "-f",
        "elf64",
        "-o",
        s2.to_str().unwrap(),
        s2_src.to_str().unwrap(),
    ]);

    let script = dir.join("bios.ld");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=4096",
        "-Wl,-z,noexecstack",
        "-Wl,--no-dynamic-linker",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    println!("cargo:rustc-link-arg-bins={}", s2.display());
    println!("cargo:rustc-env=HVBOOT_STAGE1_BIN={}", s1.display());
    for f in [&s1_src, &s2_src, &script] {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
