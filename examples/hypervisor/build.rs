//! Link arguments for an hvboot kernel (docs/kernel-api.md): freestanding,
//! static, linked with hvboot-api's kernel.ld.
fn main() {
    let script = std::env::var("DEP_HVBOOT_API_LINKER_SCRIPT").expect("hvboot-api is a dependency");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=0x1000",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{script}");
    println!("cargo:rerun-if-changed={script}");
}
