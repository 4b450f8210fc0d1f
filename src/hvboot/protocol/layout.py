"""The hvboot boot protocol: the one source of truth for its binary layout.

Everything the loader hands the kernel is defined here. `hvboot.protocol.codegen` turns these
definitions into the Rust definitions of the kernel API crate (crates/hvboot-api/src/protocol.rs),
which the loader itself also uses, and into a C header (include/hvboot.h). A test regenerates both
and fails when the committed files are stale. docs/protocol.md describes the semantics.

Layout rules: C layout (each field aligned to its own size, structs to their largest field),
little endian, no implicit padding (padding is spelled out as `reserved` fields so that every byte
is defined). Variable-length data (strings, arrays) lives after the fixed header inside the same
boot-information block and is reached through `StrRef` / `ArrayRef`: byte offsets from the start
of `BootInfo`. So the block is position independent: a kernel can read it through the direct map
or through any other mapping of it.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIMITIVES: dict[str, int] = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a primitive, a struct name, or "T[N]"
    doc: str
    enum: str | None = None  # the enum whose values the field holds


@dataclass(frozen=True)
class Struct:
    name: str
    doc: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class EnumValue:
    name: str
    value: int
    doc: str


@dataclass(frozen=True)
class Enum:
    name: str
    type: str
    doc: str
    values: tuple[EnumValue, ...]


@dataclass(frozen=True)
class Constant:
    name: str
    type: str
    value: int
    doc: str


@dataclass(frozen=True)
class Protocol:
    version: int
    constants: tuple[Constant, ...]
    enums: tuple[Enum, ...]
    structs: tuple[Struct, ...]

    def struct(self, name: str) -> Struct:
        for s in self.structs:
            if s.name == name:
                return s
        raise KeyError(name)

    def size_align(self, type_name: str) -> tuple[int, int]:
        """Size and alignment of a type under the C layout rules."""
        if type_name in PRIMITIVES:
            size = PRIMITIVES[type_name]
            return size, size
        if type_name.endswith("]"):
            elem, count = type_name[:-1].split("[")
            size, align = self.size_align(elem)
            return size * int(count), align
        offset, align = 0, 1
        for f in self.struct(type_name).fields:
            fsize, falign = self.size_align(f.type)
            if offset % falign:
                raise ValueError(f"{type_name}.{f.name}: implicit padding; add a reserved field")
            offset += fsize
            align = max(align, falign)
        if offset % align:
            raise ValueError(f"{type_name}: implicit tail padding; add a reserved field")
        return offset, align

    def offsets(self, struct_name: str) -> list[tuple[Field, int]]:
        out, offset = [], 0
        for f in self.struct(struct_name).fields:
            out.append((f, offset))
            offset += self.size_align(f.type)[0]
        return out


def _f(name: str, type_: str, doc: str, enum: str | None = None) -> Field:
    return Field(name, type_, doc, enum)


MAGIC = int.from_bytes(b"HVBOOTBI", "little")

PROTOCOL = Protocol(
    version=1,
    constants=(
        Constant(
            "BOOT_INFO_MAGIC", "u64", MAGIC, 'The bytes "HVBOOTBI" read as a little-endian u64.'
        ),
        Constant("PROTOCOL_VERSION", "u32", 1, "The protocol version this layout describes."),
        Constant(
            "DEFAULT_DIRECT_MAP_OFFSET",
            "u64",
            0xFFFF_8000_0000_0000,
            "Where all physical memory is mapped unless the kernel asks otherwise.",
        ),
        Constant(
            "DEFAULT_STACK_SIZE", "u64", 64 * 1024, "Bytes of kernel stack unless the kernel asks."
        ),
        Constant(
            "STACK_REGION_BASE",
            "u64",
            0xFFFF_FE00_0000_0000,
            "The stack is mapped just above an unmapped guard page at this address.",
        ),
    ),
    enums=(
        Enum(
            "MemoryKind",
            "u32",
            "What a range of physical memory holds (MemoryRegion.kind).",
            (
                EnumValue("USABLE", 1, "Free RAM the kernel may use at once."),
                EnumValue("RESERVED", 2, "Not to be used: firmware, MMIO, holes."),
                EnumValue("ACPI_RECLAIMABLE", 3, "ACPI tables; usable once they are parsed."),
                EnumValue("ACPI_NVS", 4, "ACPI non-volatile storage: never to be used."),
                EnumValue("BAD", 5, "RAM the firmware reported faulty."),
                EnumValue(
                    "LOADER_RECLAIMABLE",
                    6,
                    "Used by the loader or firmware boot services; free once the kernel no longer "
                    "needs anything from the loader.",
                ),
                EnumValue("KERNEL", 7, "The kernel's loaded segments."),
                EnumValue("MODULES", 8, "Module contents."),
                EnumValue("BOOT_INFO", 9, "This boot-information block."),
                EnumValue("PAGE_TABLES", 10, "The page tables in CR3 at entry, and the GDT."),
                EnumValue("FRAMEBUFFER", 11, "The linear framebuffer."),
                EnumValue("KERNEL_STACK", 12, "The kernel's entry stack."),
            ),
        ),
        Enum(
            "FirmwareKind",
            "u32",
            "The firmware the machine booted through (BootInfo.firmware).",
            (
                EnumValue("UEFI", 1, "UEFI; BootInfo.efi_system_table is set."),
                EnumValue("BIOS", 2, "Legacy BIOS."),
            ),
        ),
        Enum(
            "PixelFormat",
            "u16",
            "How a framebuffer pixel is laid out (Framebuffer.format).",
            (
                EnumValue("NONE", 0, "No framebuffer."),
                EnumValue(
                    "RGB", 1, "8 bits each, red in the lowest byte (UEFI RGB reserved 8-bit)."
                ),
                EnumValue(
                    "BGR", 2, "8 bits each, blue in the lowest byte (UEFI BGR reserved 8-bit)."
                ),
                EnumValue("BITMASK", 3, "Described by the mask fields."),
            ),
        ),
    ),
    structs=(
        Struct(
            "StrRef",
            "A UTF-8 string inside the boot-information block: byte offset from its start, length.",
            (
                _f("offset", "u32", "Bytes from the start of BootInfo."),
                _f("len", "u32", "Length in bytes, without a terminator (a NUL follows anyway)."),
            ),
        ),
        Struct(
            "ArrayRef",
            "An array inside the boot-information block: byte offset from its start, count.",
            (
                _f("offset", "u32", "Bytes from the start of BootInfo; aligned to 8."),
                _f("count", "u32", "Number of elements."),
            ),
        ),
        Struct(
            "MemoryRegion",
            "One range of the physical memory map.",
            (
                _f("base", "u64", "Physical start, 4 KiB aligned."),
                _f("length", "u64", "Bytes, a multiple of 4 KiB."),
                _f("kind", "u32", "What the range holds.", "MemoryKind"),
                _f("reserved", "u32", "Zero."),
            ),
        ),
        Struct(
            "Module",
            "A file the loader placed in memory for the kernel.",
            (
                _f("phys_addr", "u64", "Physical address of the first byte, 4 KiB aligned."),
                _f("size", "u64", "Size in bytes (the file's exact size)."),
                _f("name", "StrRef", "The module's name."),
                _f("cmdline", "StrRef", "The module's own command line (may be empty)."),
            ),
        ),
        Struct(
            "Framebuffer",
            "A linear framebuffer. phys_addr == 0 means there is none.",
            (
                _f("phys_addr", "u64", "Physical address of the top-left pixel."),
                _f("size", "u64", "Bytes: pitch * height, rounded up to 4 KiB."),
                _f("width", "u32", "Pixels."),
                _f("height", "u32", "Pixels."),
                _f("pitch", "u32", "Bytes per scan line."),
                _f("bpp", "u16", "Bits per pixel."),
                _f("format", "u16", "Pixel layout.", "PixelFormat"),
                _f("red_mask_size", "u8", "Bits of red."),
                _f("red_mask_shift", "u8", "Position of red's lowest bit."),
                _f("green_mask_size", "u8", "Bits of green."),
                _f("green_mask_shift", "u8", "Position of green's lowest bit."),
                _f("blue_mask_size", "u8", "Bits of blue."),
                _f("blue_mask_shift", "u8", "Position of blue's lowest bit."),
                _f("reserved_mask_size", "u8", "Bits not used for colour."),
                _f("reserved_mask_shift", "u8", "Position of those bits."),
            ),
        ),
        Struct(
            "BootInfo",
            "The boot-information block. RDI holds its virtual address (in the direct map) at "
            "the kernel's entry.",
            (
                _f("magic", "u64", "BOOT_INFO_MAGIC."),
                _f("version", "u32", "PROTOCOL_VERSION."),
                _f("size", "u32", "Bytes of the whole block, variable-length data included."),
                _f("header_size", "u32", "Bytes of this fixed structure as the loader wrote it."),
                _f("firmware", "u32", "The firmware that booted the machine.", "FirmwareKind"),
                _f("loader_name", "StrRef", 'The loader\'s name ("hvboot").'),
                _f("loader_version", "StrRef", "The loader's version."),
                _f("cmdline", "StrRef", "The kernel command line."),
                _f("memory_map", "ArrayRef", "MemoryRegion[]: sorted, non-overlapping, merged."),
                _f("modules", "ArrayRef", "Module[] in the order they were configured."),
                _f("framebuffer", "Framebuffer", "The framebuffer, if any."),
                _f("rsdp_phys", "u64", "ACPI RSDP (ACPI 2.0+ preferred), 0 if none."),
                _f("smbios_entry_phys", "u64", "SMBIOS 2.x entry point (_SM_), 0 if none."),
                _f("smbios3_entry_phys", "u64", "SMBIOS 3.x entry point (_SM3_), 0 if none."),
                _f(
                    "efi_system_table",
                    "u64",
                    "Physical address of the EFI system table; 0 on BIOS.",
                ),
                _f("kernel_phys_base", "u64", "Physical address of the kernel's lowest page."),
                _f("kernel_virt_base", "u64", "Virtual address of the kernel's lowest page."),
                _f("kernel_size", "u64", "Bytes from the lowest to the end of the highest page."),
                _f("direct_map_offset", "u64", "Virtual = physical + this, for all memory."),
                _f("direct_map_size", "u64", "Bytes of physical memory the direct map covers."),
                _f("boot_info_phys", "u64", "Physical address of this block."),
                _f("page_tables_phys", "u64", "CR3 at entry."),
                _f("stack_top", "u64", "Virtual address just above the entry stack."),
                _f("stack_size", "u64", "Bytes of entry stack (a guard page lies below)."),
                _f("tsc_loader_start", "u64", "TSC when the loader started."),
                _f("tsc_handoff", "u64", "TSC just before the jump to the kernel."),
            ),
        ),
    ),
)
