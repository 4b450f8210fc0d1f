//! Exports the absolute path of `kernel.ld` (the linker script for hvboot
//! kernels) to dependent crates' build scripts. Because of `links = "hvboot_api"`
//! in Cargo.toml, Cargo hands `cargo:linker_script=...` to the build script of
//! every crate that depends directly on hvboot-api as the environment variable
//! `DEP_HVBOOT_API_LINKER_SCRIPT`. See docs/kernel-api.md.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let script = dir.join("kernel.ld");
    assert!(script.is_file(), "missing {}", script.display());
    println!("cargo:rerun-if-changed=kernel.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:linker_script={}", script.display());
}
