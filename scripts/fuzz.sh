#!/usr/bin/env bash
# Fuzz what the loader parses on the machine (loader/core/fuzz): the kernel ELF checks, the
# Multiboot2 header rules and the loader config parser. Needs the nightly toolchain and cargo-fuzz (fuzzing only; the product
# builds on stable):  rustup toolchain install nightly && cargo install cargo-fuzz
#   scripts/fuzz.sh [SECONDS]   each target for SECONDS (default 60), seeded with the test kernels
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
corpus=loader/core/fuzz/corpus
mkdir -p "$corpus/elf_check" "$corpus/multiboot2_check" "$corpus/loader_config"
for k in tests/kernels/target/release/hvboot-*-kernel; do
  [ -f "$k" ] && cp "$k" "$corpus/elf_check/"
done
for k in tests/kernels/build/*mb2*.elf; do
  [ -f "$k" ] && cp "$k" "$corpus/multiboot2_check/"
done
printf 'hvboot-config 1\nkernel /hvboot/kernel.elf\ncmdline x=1\nmodule /hvboot/modules/g\nmodule-name g\n' \
  >"$corpus/loader_config/example"
cd loader/core/fuzz
for target in elf_check multiboot2_check loader_config; do
  echo "fuzz: $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=262144
done
