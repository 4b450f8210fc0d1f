"""hvboot: boot x86_64 hypervisor kernels under BIOS and UEFI."""

__version__ = "0.1.0"
