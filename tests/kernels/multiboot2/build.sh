#!/usr/bin/env bash
# Builds the Multiboot2 test kernel (32-bit ELF, gcc -m32 without a libc) into
# tests/kernels/build/hvboot-mb2-kernel.elf (-Wno-array-bounds: it reads the BDA and IVT at fixed
# low addresses).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../build"
mkdir -p "$out"
gcc -m32 -march=i686 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
  -mno-sse -mno-mmx -O2 -Wall -Wextra -Wno-array-bounds -nostdlib -no-pie -static -Wl,--build-id=none -Wl,--no-warn-rwx-segments \
  -T "$here/kernel.ld" -o "$out/hvboot-mb2-kernel.elf" "$here/kernel.c"
