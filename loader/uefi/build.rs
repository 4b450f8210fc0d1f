//! Link the loader as a static PIE with `efi_main` as its entry; the toolkit turns the ELF into
//! a PE32+ EFI application (src/hvboot/pe.py). No uefi target is installed here, so the host
//! target is used without its C runtime (see docs/loader.md).
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static-pie",
        "-Wl,--no-dynamic-linker",
        "-Wl,-e,efi_main",
        "-Wl,-z,norelro",
        "-Wl,-z,max-page-size=4096",
        "-Wl,--build-id=none",
        "-Wl,-z,noexecstack",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
