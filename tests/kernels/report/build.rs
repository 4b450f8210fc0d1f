//! Link arguments for an hvboot kernel (docs/kernel-api.md): freestanding,
//! static, linked with hvboot-api's kernel.ld.
//!
//! With HVBOOT_KERNEL_PIE set (tests/kernels/build-pie.sh), a static PIE instead: the
//! same script linked at 0 that keeps the dynamic section and its relocations (in the R--
//! segment, with a PT_DYNAMIC) which the loader applies; rustc passes -static-pie itself
//! (relocation-model=pie with crt-static).
fn main() {
    let script = std::env::var("DEP_HVBOOT_API_LINKER_SCRIPT").expect("hvboot-api is a dependency");
    println!("cargo:rerun-if-changed={script}");
    println!("cargo:rerun-if-env-changed=HVBOOT_KERNEL_PIE");
    let pie = std::env::var_os("HVBOOT_KERNEL_PIE").is_some();
    let link = if pie { "-Wl,--no-dynamic-linker" } else { "-static" };
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        link,
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=0x1000",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    let script = if pie { pie_script(&script) } else { script };
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{script}");
}

/// kernel.ld for a static PIE, written to OUT_DIR: linked at 0, the dynamic section, symbol
/// tables and relocations kept in the read-only segment, `.dynamic` also as the PT_DYNAMIC.
fn pie_script(base: &str) -> String {
    let text = std::fs::read_to_string(base).expect("hvboot-api's kernel.ld");
    let edits = [
        (
            "KERNEL_VIRT_BASE = 0xffffffff80000000;",
            "KERNEL_VIRT_BASE = 0;",
        ),
        (
            "    data   PT_LOAD FLAGS(6);   /* PF_R | PF_W */\n",
            "    data   PT_LOAD FLAGS(6);   /* PF_R | PF_W */\n    dynamic PT_DYNAMIC FLAGS(4);\n",
        ),
        (
            "    .data.rel.ro : {\n",
            "    .dynamic : { *(.dynamic) } :rodata :dynamic\n    \
             .dynsym : { *(.dynsym) } :rodata\n    .dynstr : { *(.dynstr) } :rodata\n    \
             .hash : { *(.hash) } :rodata\n    .gnu.hash : { *(.gnu.hash) } :rodata\n    \
             .rela.dyn : { *(.rela.dyn .rela.*) } :rodata\n\n    .data.rel.ro : {\n",
        ),
        (
            "        *(.interp .dynamic .dynsym .dynstr .hash .gnu.hash)\n",
            "        *(.interp)\n",
        ),
    ];
    let mut script = text;
    for (from, to) in edits {
        assert!(script.contains(from), "kernel.ld changed: {from:?} not found");
        script = script.replacen(from, to, 1);
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("kernel-pie.ld");
    std::fs::write(&out, script).unwrap();
    out.display().to_string()
}
