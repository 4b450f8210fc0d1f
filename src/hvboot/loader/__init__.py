"""The loader hvboot puts on an image: its built binaries, BIOS stages, ELF->PE, its config file."""
