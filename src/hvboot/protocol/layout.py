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
REQUEST_MAGIC = int.from_bytes(b"HVBOOTRQ", "little")

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
        Constant(
            "TPM_PCR_CONFIG",
            "u32",
            8,
            "The PCR the loader extends with hvboot.cfg and the kernel command line (measured "
            "boot, docs/trust.md): 8-15 are the OS's (TCG PC Client PFP), 8 holds a loader's "
            "config and command line as GRUB's does.",
        ),
        Constant(
            "TPM_PCR_FILES",
            "u32",
            9,
            "The PCR the loader extends with the kernel and each module (docs/trust.md), as "
            "GRUB and Linux's EFI stub use PCR 9 for the files they load.",
        ),
        Constant(
            "BOOT_INFO_V1_HEADER_SIZE",
            "u32",
            224,
            "BootInfo.header_size of the first v1 layout (up to tsc_handoff); the smallest "
            "header a kernel must accept. Fields past header_size are absent.",
        ),
        Constant(
            "REQUEST_MAGIC",
            "u64",
            REQUEST_MAGIC,
            'KernelRequest.magic: the bytes "HVBOOTRQ" read as a little-endian u64.',
        ),
        Constant("REQUEST_VERSION", "u32", 2, "The KernelRequest version this layout describes."),
        Constant(
            "REQUEST_V1_SIZE",
            "u32",
            80,
            "KernelRequest.size of a version-1 request (up to guest); still accepted.",
        ),
        Constant(
            "DEFAULT_AP_STACK_SIZE",
            "u64",
            64 * 1024,
            "Bytes of stack per application processor unless the kernel asks (START_APS).",
        ),
        Constant(
            "FRAMEBUFFER_NONE",
            "u32",
            0xFFFF_FFFF,
            "KernelRequest.framebuffer_width/height: the kernel wants no framebuffer.",
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
                EnumValue(
                    "GUEST_RESERVED",
                    13,
                    "RAM set aside for guests at the kernel's request "
                    "(BootInfo.guest_reservation_*); the loader never touched it.",
                ),
                EnumValue(
                    "AP_TRAMPOLINE",
                    14,
                    "A free page below 1 MiB for the kernel's SIPI trampoline "
                    "(BootInfo.ap_trampoline_phys).",
                ),
            ),
        ),
        Enum(
            "VirtFlags",
            "u32",
            "Bits of VirtReport.flags: what the CPU offers a hypervisor.",
            (
                EnumValue("VMX", 1 << 0, "Intel VMX (CPUID.1:ECX[5])."),
                EnumValue("SVM", 1 << 1, "AMD SVM (CPUID.80000001h:ECX[2])."),
                EnumValue(
                    "EPT",
                    1 << 2,
                    "Intel EPT: secondary controls and 'enable EPT' allowed "
                    "(IA32_VMX_PROCBASED_CTLS bit 63, IA32_VMX_PROCBASED_CTLS2 bit 33).",
                ),
                EnumValue("NPT", 1 << 3, "AMD nested paging (CPUID.8000000Ah:EDX[0])."),
                EnumValue("GIB_PAGES", 1 << 4, "1 GiB pages (CPUID.80000001h:EDX[26])."),
                EnumValue("X2APIC", 1 << 5, "x2APIC (CPUID.1:ECX[21])."),
                EnumValue("INVARIANT_TSC", 1 << 6, "Invariant TSC (CPUID.80000007h:EDX[8])."),
                EnumValue("HYPERVISOR", 1 << 7, "Running under a hypervisor (CPUID.1:ECX[31])."),
                EnumValue(
                    "FEATURE_CONTROL_READ",
                    1 << 8,
                    "feature_control_before/after hold IA32_FEATURE_CONTROL (MSR 3Ah) values.",
                ),
                EnumValue("VM_CR_READ", 1 << 9, "vm_cr holds VM_CR (MSR C001_0114h)."),
                EnumValue(
                    "EPT_VPID_CAP_READ",
                    1 << 10,
                    "vmx_ept_vpid_cap holds IA32_VMX_EPT_VPID_CAP (MSR 48Ch).",
                ),
                EnumValue(
                    "VMX_ENABLED_BY_LOADER",
                    1 << 11,
                    "The loader found IA32_FEATURE_CONTROL unlocked and set VMX-outside-SMX and "
                    "the lock bit on every CPU (KernelRequest flag ENABLE_VMX).",
                ),
                EnumValue("VPID", 1 << 12, "Intel VPID allowed (IA32_VMX_PROCBASED_CTLS2 bit 37)."),
                EnumValue(
                    "VALID", 1 << 31, "The report was filled in; without it the report is absent."
                ),
            ),
        ),
        Enum(
            "CpuFlags",
            "u32",
            "Bits of CpuEntry.flags (ACPI 6.5 §5.2.12.2 and §5.2.12.12 Local APIC flags).",
            (
                EnumValue("ENABLED", 1 << 0, "The processor is usable (MADT flag Enabled)."),
                EnumValue(
                    "ONLINE_CAPABLE",
                    1 << 1,
                    "Not enabled now, but can be brought online at run time (MADT flag Online "
                    "Capable). A CPU with neither flag cannot be used.",
                ),
                EnumValue("BSP", 1 << 2, "The bootstrap processor: the one running the kernel."),
                EnumValue(
                    "X2APIC", 1 << 3, "Listed by a Processor Local x2APIC structure (MADT type 9)."
                ),
            ),
        ),
        Enum(
            "ExtentKind",
            "u32",
            "What a PlacedExtent holds.",
            (
                EnumValue("KERNEL_SEGMENT", 1, "A PT_LOAD segment; index = its program header."),
                EnumValue("MODULE", 2, "A module; index = its position in BootInfo.modules."),
                EnumValue("BOOT_INFO", 3, "The boot-information block."),
                EnumValue("PAGE_TABLES", 4, "The page tables in CR3 at entry."),
                EnumValue("STACK", 5, "The entry stack (virt = its lowest mapped byte)."),
                EnumValue("AP_TRAMPOLINE", 6, "The AP trampoline page."),
                EnumValue("GUEST_RESERVATION", 7, "The guest-memory reservation."),
                EnumValue("GDT", 8, "The GDT loaded at entry."),
                EnumValue(
                    "CPU_DATA",
                    9,
                    "The started processors' mailboxes, GDTs and TSSs (START_APS).",
                ),
            ),
        ),
        Enum(
            "TscStage",
            "u32",
            "Indices into BootInfo.tsc_stamps, in the order the loader passes them.",
            (
                EnumValue("LOADER_ENTRY", 0, "The loader's first instruction in Rust."),
                EnumValue("FILES_READ", 1, "Kernel and modules read from the disk."),
                EnumValue("PAGE_TABLES_BUILT", 2, "The kernel's page tables built."),
                EnumValue(
                    "FIRMWARE_EXITED", 3, "UEFI boot services exited (BIOS: last BIOS call made)."
                ),
                EnumValue("HANDOFF", 4, "Just before the jump to the kernel."),
            ),
        ),
        Enum(
            "RequestFlags",
            "u32",
            "Bits of KernelRequest.flags.",
            (
                EnumValue(
                    "AP_TRAMPOLINE",
                    1 << 0,
                    "Reserve a free 4 KiB page below 1 MiB for a SIPI trampoline.",
                ),
                EnumValue(
                    "ENABLE_VMX",
                    1 << 1,
                    "On Intel CPUs with VMX whose IA32_FEATURE_CONTROL is unlocked, set "
                    "VMX-outside-SMX and lock it, on every CPU. Never locks it with VMX off.",
                ),
                EnumValue(
                    "START_APS",
                    1 << 2,
                    "Start every enabled application processor and park it on its own mailbox "
                    "(BootInfo.cpu_starts); the loader uses an AP trampoline page for it.",
                ),
            ),
        ),
        Enum(
            "CpuState",
            "u32",
            "What became of a processor (CpuStart.state).",
            (
                EnumValue("NOT_STARTED", 0, "The loader did not try to start it."),
                EnumValue("BSP", 1, "The bootstrap processor: the one running the kernel."),
                EnumValue("PARKED", 2, "Started; waits on its mailbox for the kernel."),
                EnumValue("NO_ANSWER", 3, "Sent INIT-SIPI-SIPI, did not arrive in time."),
                EnumValue("DISABLED", 4, "Neither enabled nor online capable in the MADT."),
                EnumValue("ONLINE_CAPABLE", 5, "Online capable in the MADT; not started."),
            ),
        ),
        Enum(
            "TscSource",
            "u32",
            "Where BootInfo.tsc_frequency_hz comes from.",
            (
                EnumValue(
                    "UNKNOWN", 0, "Not known: no CPUID leaf and no timer to measure against."
                ),
                EnumValue("CPUID", 1, "CPUID leaf 15h (or 16h), as hvboot-api's virt report."),
                EnumValue(
                    "PM_TIMER", 2, "Measured against the ACPI PM timer (FADT), 3.579545 MHz."
                ),
                EnumValue(
                    "PIT",
                    3,
                    "Measured against the 8254 PIT's channel 2, 1.193182 MHz (no PM timer).",
                ),
            ),
        ),
        Enum(
            "CpuStartFlags",
            "u32",
            "Bits of CpuStart.flags: what the processor reported about itself on arrival.",
            (
                EnumValue("VMX", 1 << 0, "Intel VMX (CPUID.1:ECX[5])."),
                EnumValue("SVM", 1 << 1, "AMD SVM (CPUID.80000001h:ECX[2])."),
                EnumValue(
                    "FEATURE_CONTROL_READ",
                    1 << 2,
                    "feature_control_before/after hold IA32_FEATURE_CONTROL values.",
                ),
                EnumValue(
                    "VMX_ENABLED_BY_LOADER",
                    1 << 3,
                    "The loader set VMX-outside-SMX and the lock bit of IA32_FEATURE_CONTROL here.",
                ),
                EnumValue(
                    "DIFFERS_FROM_BSP",
                    1 << 4,
                    "Microcode revision, VMX/SVM or feature-control state differ from the BSP's.",
                ),
                EnumValue("MWAIT", 1 << 5, "Parks with MONITOR/MWAIT (else PAUSE)."),
            ),
        ),
        Enum(
            "MailboxState",
            "u32",
            "CpuMailbox.state, written by the processor itself.",
            (
                EnumValue("EMPTY", 0, "Not arrived (yet)."),
                EnumValue("PARKED", 1, "Arrived and waiting for an entry address."),
                EnumValue("RELEASED", 2, "Took the entry address and jumped there."),
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
            "VirtReport",
            "What the CPU offers a hypervisor, as the loader found it on the bootstrap processor.",
            (
                _f("vendor", "u8[12]", 'CPUID.0 vendor string ("AuthenticAMD", "GenuineIntel").'),
                _f("flags", "u32", "Features and which MSR fields are valid.", "VirtFlags"),
                _f("max_phys_addr_bits", "u8", "MAXPHYADDR (CPUID.80000008h:EAX[7:0])."),
                _f(
                    "max_linear_addr_bits", "u8", "Linear-address bits (CPUID.80000008h:EAX[15:8])."
                ),
                _f("svm_revision", "u8", "SVM revision (CPUID.8000000Ah:EAX[7:0]); 0 without SVM."),
                _f("reserved", "u8", "Zero."),
                _f("svm_asids", "u32", "Number of SVM ASIDs (CPUID.8000000Ah:EBX); 0 without SVM."),
                _f(
                    "feature_control_before", "u64", "IA32_FEATURE_CONTROL as the firmware left it."
                ),
                _f("feature_control_after", "u64", "IA32_FEATURE_CONTROL at hand-off."),
                _f("vm_cr", "u64", "VM_CR (bit 4 SVMDIS: SVM disabled by firmware; bit 3 LOCK)."),
                _f("vmx_ept_vpid_cap", "u64", "IA32_VMX_EPT_VPID_CAP."),
                _f("tsc_frequency_hz", "u64", "TSC frequency from CPUID 15h/16h, 0 if unknown."),
            ),
        ),
        Struct(
            "CpuEntry",
            "A processor from the ACPI MADT (types 0 Local APIC and 9 Local x2APIC).",
            (
                _f("apic_id", "u32", "Local APIC or x2APIC ID."),
                _f("acpi_uid", "u32", "ACPI processor UID."),
                _f("flags", "u32", "Enabled, online capable, BSP, x2APIC.", "CpuFlags"),
                _f("reserved", "u32", "Zero."),
            ),
        ),
        Struct(
            "CpuStart",
            "What the loader did with one processor (START_APS): BootInfo.cpu_starts, in the "
            "order and number of BootInfo.cpus.",
            (
                _f("apic_id", "u32", "Local APIC or x2APIC ID."),
                _f("acpi_uid", "u32", "ACPI processor UID."),
                _f("state", "u32", "BSP, parked, no answer, disabled, online capable.", "CpuState"),
                _f("flags", "u32", "What it reported on arrival.", "CpuStartFlags"),
                _f(
                    "tsc_arrived",
                    "u64",
                    "Its own TSC when it arrived in long mode; 0 if not. The BSP's: the TSC "
                    "when the loader sent the first INIT (0 with no AP to start).",
                ),
                _f("stack_bottom", "u64", "Lowest mapped byte of its stack (guard page below)."),
                _f("stack_size", "u64", "Bytes of its stack; RSP = stack_bottom + stack_size."),
                _f("mailbox", "u64", "Its CpuMailbox (virtual, in the direct map); 0 if none."),
                _f("microcode", "u64", "Microcode revision (IA32_BIOS_SIGN_ID[63:32])."),
                _f("feature_control_before", "u64", "IA32_FEATURE_CONTROL as found."),
                _f("feature_control_after", "u64", "IA32_FEATURE_CONTROL when parked."),
            ),
        ),
        Struct(
            "AcpiTables",
            "Physical addresses of ACPI tables the loader found through the RSDP (the XSDT "
            "when the RSDP has one, else the RSDT); 0 = not present. Each is the first table "
            "of its signature; its header (signature, length, checksum) was checked.",
            (
                _f("madt", "u64", 'MADT ("APIC"): processors and interrupt controllers.'),
                _f("fadt", "u64", 'FADT ("FACP"): the PM timer, reset register, DSDT.'),
                _f("mcfg", "u64", 'MCFG ("MCFG"): PCI Express configuration space.'),
                _f("srat", "u64", 'SRAT ("SRAT"): NUMA affinity of CPUs and memory.'),
                _f("dmar", "u64", 'DMAR ("DMAR"): Intel VT-d remapping units.'),
                _f("ivrs", "u64", 'IVRS ("IVRS"): AMD-Vi IOMMUs.'),
            ),
        ),
        Struct(
            "CpuMailbox",
            "A parked processor's mailbox (128 bytes). The kernel writes argument, then entry: "
            "the processor jumps to entry with RDI = its CpuStart (virtual), RSI = argument.",
            (
                _f("entry", "u64", "0 while parked; the kernel's entry address (virtual)."),
                _f("argument", "u64", "Passed in RSI."),
                _f("cpu_start", "u64", "Its CpuStart in the boot information (virtual): RDI."),
                _f("state", "u32", "Written by the processor.", "MailboxState"),
                _f("apic_id", "u32", "The processor's APIC ID, as it read it itself."),
                _f("tsc_arrived", "u64", "Its TSC on arrival."),
                _f("feature_control_before", "u64", "IA32_FEATURE_CONTROL as found."),
                _f("feature_control_after", "u64", "IA32_FEATURE_CONTROL when parked."),
                _f("microcode", "u64", "IA32_BIOS_SIGN_ID after CPUID.1."),
                _f("cpuid1_ecx", "u32", "CPUID.1:ECX."),
                _f("cpuid_ext_ecx", "u32", "CPUID.80000001h:ECX."),
                _f("reserved", "u64[7]", "Zero."),
            ),
        ),
        Struct(
            "FirmwareMemoryEntry",
            "One entry of the firmware's own memory map, untranslated: an EFI memory descriptor "
            "(UEFI) or an E820 entry (BIOS).",
            (
                _f("base", "u64", "Physical start."),
                _f("length", "u64", "Bytes (EFI: NumberOfPages * 4096)."),
                _f("firmware_type", "u32", "EFI_MEMORY_TYPE (UEFI) or E820 type (BIOS)."),
                _f("reserved", "u32", "Zero."),
                _f("attributes", "u64", "EFI attribute bits (UEFI) or E820 extended attributes."),
            ),
        ),
        Struct(
            "PlacedExtent",
            "A range of memory the loader placed something in.",
            (
                _f("phys", "u64", "Physical start, 4 KiB aligned."),
                _f("virt", "u64", "Where it is mapped at entry besides the direct map; 0 if not."),
                _f("length", "u64", "Bytes, a multiple of 4 KiB."),
                _f("what", "u32", "What it holds.", "ExtentKind"),
                _f("index", "u32", "Which one (program header or module index), else 0."),
            ),
        ),
        Struct(
            "GuestRequest",
            "Guest memory the kernel asks the loader to set aside (KernelRequest.guest).",
            (
                _f("size", "u64", "Bytes, a multiple of 4 KiB; 0 = no reservation."),
                _f("alignment", "u64", "Power of two >= 4 KiB (0 = 4 KiB)."),
                _f(
                    "max_address", "u64", "The reservation must end at or below this; 0 = anywhere."
                ),
                _f("fixed_base", "u64", "Exactly this physical base; 0 = any."),
            ),
        ),
        Struct(
            "KernelRequest",
            "What the kernel asks of the loader: placed in the ELF section .hvboot_request.",
            (
                _f("magic", "u64", "REQUEST_MAGIC."),
                _f("version", "u32", "REQUEST_VERSION."),
                _f("size", "u32", "Bytes of this structure as the kernel was built with it."),
                _f("flags", "u32", "What else the kernel wants.", "RequestFlags"),
                _f(
                    "framebuffer_width",
                    "u32",
                    "Pixels; 0 = firmware default, FRAMEBUFFER_NONE = none.",
                ),
                _f(
                    "framebuffer_height",
                    "u32",
                    "Pixels; 0 = firmware default, FRAMEBUFFER_NONE = none.",
                ),
                _f("module_alignment", "u32", "4096 or 2 MiB; 0 = 4096."),
                _f(
                    "stack_size",
                    "u64",
                    "Bytes of entry stack, a multiple of 4 KiB; 0 = DEFAULT_STACK_SIZE.",
                ),
                _f(
                    "direct_map_offset",
                    "u64",
                    "Where to map all physical memory, 1 GiB aligned, higher half; "
                    "0 = DEFAULT_DIRECT_MAP_OFFSET.",
                ),
                _f("guest", "GuestRequest", "Guest memory to reserve."),
                # Version 2 (REQUEST_V1_SIZE = 80 bytes before it):
                _f(
                    "ap_stack_size",
                    "u64",
                    "Bytes of stack per started AP, a multiple of 4 KiB; "
                    "0 = DEFAULT_AP_STACK_SIZE.",
                ),
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
                # Additions after the first v1 layout (BOOT_INFO_V1_HEADER_SIZE = 224): absent
                # when header_size does not cover them.
                _f("virt", "VirtReport", "Virtualization report (absent unless flags has VALID)."),
                _f("cpus", "ArrayRef", "CpuEntry[] from the MADT, in MADT order."),
                _f(
                    "firmware_memory_map",
                    "ArrayRef",
                    "FirmwareMemoryEntry[]: the raw firmware map.",
                ),
                _f("placed_extents", "ArrayRef", "PlacedExtent[]: everything the loader placed."),
                _f("tsc_stamps", "ArrayRef", "u64[] indexed by TscStage; 0 = not recorded."),
                _f(
                    "local_apic_phys",
                    "u64",
                    "Local APIC MMIO base (MADT, with override); 0 if none.",
                ),
                _f("guest_reservation_phys", "u64", "Start of the guest reservation; 0 if none."),
                _f("guest_reservation_size", "u64", "Bytes of the guest reservation; 0 if none."),
                _f("ap_trampoline_phys", "u64", "The AP trampoline page below 1 MiB; 0 if none."),
                _f(
                    "request_version",
                    "u32",
                    "KernelRequest.version the loader found and honoured; 0 = no request.",
                ),
                _f("reserved", "u32", "Zero."),
                _f(
                    "cpu_starts",
                    "ArrayRef",
                    "CpuStart[], one per cpus entry (START_APS); empty if not asked.",
                ),
                _f("acpi_tables", "AcpiTables", "ACPI tables found through the RSDP."),
                _f("tsc_frequency_hz", "u64", "The BSP's TSC frequency; 0 if unknown."),
                _f("tsc_source", "u32", "Where tsc_frequency_hz comes from.", "TscSource"),
                _f("reserved2", "u32", "Zero."),
                _f(
                    "tpm_event_log_phys",
                    "u64",
                    "The TPM event log (TCG2 crypto-agile format, TCG PC Client PFP §10) as it "
                    "stood after the loader's last measurement, copied into BOOT_INFO memory; "
                    "0 when nothing was measured.",
                ),
                _f("tpm_event_log_size", "u64", "Bytes of that log; 0 when none."),
                _f(
                    "tpm_final_events_phys",
                    "u64",
                    "EFI_TCG2_FINAL_EVENTS_TABLE (TCG EFI Protocol §6.4): the events logged "
                    "after the copy was taken (ExitBootServices'); 0 when none.",
                ),
            ),
        ),
    ),
)
