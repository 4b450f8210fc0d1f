#!/usr/bin/env bash
# Builds the Multiboot2 test kernel (gcc without a libc; -Wno-array-bounds: it reads the BDA and
# IVT at fixed low addresses) three times into tests/kernels/build/: hvboot-mb2-kernel.elf
# (32-bit ELF, the 32-bit entry), hvboot-mb2-fb-kernel.elf (the same with a framebuffer tag) and hvboot-mb2-efi64-kernel.elf (-DEFI64: 64-bit, position-independent
# so the loader may move it, entered at its EFI amd64 entry with boot services running).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../build"
mkdir -p "$out"
flags=(-ffreestanding -fno-stack-protector -fno-asynchronous-unwind-tables -mno-sse -mno-mmx -O2
  -Wall -Wextra -Wno-array-bounds -nostdlib -static -Wl,--build-id=none -Wl,--no-warn-rwx-segments
  -T "$here/kernel.ld")
gcc -m32 -march=i686 -fno-pic -fno-pie -no-pie "${flags[@]}" -o "$out/hvboot-mb2-kernel.elf" \
  "$here/kernel.c"
gcc -m32 -march=i686 -DFRAMEBUFFER -fno-pic -fno-pie -no-pie "${flags[@]}" \
  -o "$out/hvboot-mb2-fb-kernel.elf" "$here/kernel.c"
gcc -m64 -DEFI64 -fpie -mno-red-zone -no-pie "${flags[@]}" -Wl,-e,_start64 \
  -o "$out/hvboot-mb2-efi64-kernel.elf" "$here/kernel.c"
