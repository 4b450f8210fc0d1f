#!/usr/bin/env bash
# Set up everything hvboot needs on Debian 12, build the loader and the sample hypervisor, then
# run the demo (the sample hypervisor booted under UEFI in QEMU).
#   scripts/setup.sh            set up + demo
#   scripts/setup.sh --no-demo  set up only (the test script uses this)
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(qemu-system-x86 ovmf nasm gdb mtools dosfstools gdisk lld binutils gcc python3-venv xorriso ipxe-qemu sbsigntool swtpm swtpm-tools tpm2-tools)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found: install Rust with rustup (stable), then re-run" >&2
  exit 1
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating the Python virtual environment in .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

echo "setup: building the loader and kernel crates (Cargo.toml: loader/*, crates/*; BIOS stages 1 + 2 via nasm)"
cargo build --release --quiet
echo "setup: building the sample hypervisor (examples/hypervisor/)"
cargo build --release --quiet --manifest-path examples/hypervisor/Cargo.toml
echo "setup: building the test kernels (tests/kernels/)"
cargo build --release --quiet --manifest-path tests/kernels/Cargo.toml
tests/kernels/multiboot2/build.sh
tests/kernels/build-pie.sh
echo "setup: fetching Debian's Xen 4.17 for the tests (tests/.cache/debian, not installed)"
tests/fetch_debian.sh
# rust-osdev/bootloader's test kernels (not on crates.io): from GitHub or $HVBOOT_BOOTLOADER_GIT.
.venv/bin/python tests/rust_osdev.py ||
    echo "setup: rust-osdev's test kernels not built (no GitHub? set HVBOOT_BOOTLOADER_GIT); tests/test_rust_osdev.py skips them"

if [ "${1:-}" != "--no-demo" ]; then
  echo "setup: running the demo: .venv/bin/hvboot demo"
  .venv/bin/hvboot demo
fi
