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
