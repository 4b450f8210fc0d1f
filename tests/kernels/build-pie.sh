#!/usr/bin/env bash
# The Limine and report test kernels built as position-independent executables: static PIEs
# (ET_DYN) linked at 0 with their R_X86_64_RELATIVE relocations, which the loader slides to
# 0xffffffff80000000 (docs/loader.md, "Relocation"; docs/limine.md). Into target/pie/
# (tests/test_limine.py, tests/test_boot.py).
# --target keeps the kernel's flags off the build scripts and proc macros.
set -euo pipefail
cd "$(dirname "$0")"
flags=(relocation-model=pie code-model=small no-redzone=yes force-unwind-tables=no
       target-feature=+crt-static)
encoded=$(printf -- '-C\x1f%s\x1f' "${flags[@]}")
CARGO_ENCODED_RUSTFLAGS=${encoded%$'\x1f'} HVBOOT_KERNEL_PIE=1 exec cargo build --release --quiet \
    -p hvboot-limine-kernel -p hvboot-report-kernel --target x86_64-unknown-linux-gnu \
    --target-dir target/pie
