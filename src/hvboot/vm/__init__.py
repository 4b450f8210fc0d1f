"""The machine: QEMU, its firmware (OVMF), GDB attached to it."""
