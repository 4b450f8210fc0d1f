"""Writing and reading images: GPT, FAT, the whole disk, and the build that fills them."""
