"""The boot protocol: its one definition (layout) and the code generated from it."""
