#!/usr/bin/env bash
# Fetches Debian 12's Xen hypervisor package into tests/.cache/debian and unpacks it there with
# dpkg-deb -x (never installed on the host): tests/.cache/debian/xen/boot/xen-4.17-amd64.gz.
# Used by the test set-up (scripts/setup.sh); a no-op once unpacked. Needs apt's package lists
# (apt-get update once on the machine).
set -euo pipefail
cache="$(cd "$(dirname "$0")" && pwd)/.cache/debian"
mkdir -p "$cache"
cd "$cache"
if ! ls xen/boot/xen-4.17-amd64.gz >/dev/null 2>&1; then
  rm -f xen-hypervisor-4.17-amd64_*.deb
  # apt's sandbox user cannot write here; the download is the same without it.
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  get() { apt-get -q -o APT::Sandbox::User=root download xen-hypervisor-4.17-amd64 >/dev/null; }
  get || { $SUDO apt-get update -qq && get; }
  dpkg-deb -x xen-hypervisor-4.17-amd64_*.deb xen
fi

# Debian 12's Linux (the newest linux-image-6.1.0-N-amd64 apt knows; only vmlinuz is kept, the
# .deb and its modules are large) and busybox-static for the initramfs tests/linux_initramfs.py
# builds: tests/.cache/debian/linux/vmlinuz, tests/.cache/debian/busybox/bin/busybox.
fetch_deb() { # PACKAGE DIR: apt-get download PACKAGE and dpkg-deb -x it into DIR
  rm -f "$1"_*.deb
  apt-get -q -o APT::Sandbox::User=root download "$1" >/dev/null ||
    { $SUDO apt-get update -qq && apt-get -q -o APT::Sandbox::User=root download "$1" >/dev/null; }
  rm -rf "$2" && dpkg-deb -x "$1"_*.deb "$2"
}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ! -f linux/vmlinuz ]; then
  pkg="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | cut -d' ' -f1 |
    sort -V | tail -n 1)"
  [ -n "$pkg" ] || { echo "fetch_debian.sh: no linux-image-6.1.0-*-amd64 in apt's lists" >&2; exit 1; }
  fetch_deb "$pkg" linux.tmp
  mkdir -p linux && cp linux.tmp/boot/vmlinuz-* linux/vmlinuz && echo "$pkg" > linux/package
  rm -rf linux.tmp "$pkg"_*.deb
fi
if [ ! -f busybox/bin/busybox ]; then
  fetch_deb busybox-static busybox && rm -f busybox-static_*.deb
fi
