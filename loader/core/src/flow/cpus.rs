//! Phase 5, CPU start-up (docs/hypervisor.md, "Starting the processors"), for a kernel whose
//! request has `START_APS`. Before the firmware is left, [`prepare`] writes the trampoline
//! (`crate::trampoline`) into its low page and the per-CPU data (APIC IDs, stack tops, the BSP's
//! MTRRs and PAT, mailboxes, GDTs with TSSs); the address-space phase has mapped the AP stacks
//! (guard page below each) and the trampoline page. After the firmware is left, [`start`] sends
//! INIT to every AP the MADT lists as enabled, then SIPI, SIPI (Intel SDM Vol. 3A §9.4.4.1) to
//! all of them back to back, and waits for all at once with TSC deadlines; the records say
//! which arrived. The decisions here run on the host over the fake (`flow/tests.rs`); the APIC
//! and the trampoline sit behind [`Cpu`].

use alloc::vec::Vec;
use core::mem::size_of;

use hvboot_api::{
    CpuEntry, CpuFlags, CpuMailbox, CpuStart, CpuStartFlags, CpuState, ExtentKind, MailboxState,
    MemoryKind, RequestFlags, VirtReport,
};

use super::cpu::{Cpu, Ipi};
use super::inputs::Wants;
use super::place::{extent, Placed};
use super::{phys_slice, Error, Placement, Platform};
use crate::trampoline::{self, ApParams, GDT_SLOT, MAX_MSRS};
use crate::{handoff, PAGE_SIZE as PAGE};

/// SDM Vol. 3A §9.4.4.1: 10 ms after INIT, 200 µs after each SIPI (minimums).
pub const INIT_DELAY_US: u64 = 10_000;
/// See [`INIT_DELAY_US`].
pub const SIPI_DELAY_US: u64 = 200;
/// How long all APs together get to arrive after the second SIPI. Real processors arrive within
/// milliseconds; QEMU's TCG with 64 vCPUs on 2 busy host cores parks the last one up to about
/// 0.9 s after the first INIT (bench/README.md), so 1 s was too tight once the delays ran at the
/// calibrated TSC rate. Only a CPU that never answers costs this much.
pub const ANSWER_TIMEOUT_US: u64 = 5_000_000;
/// TSC ticks per µs assumed when CPUID does not give the frequency: 10 GHz, above any real TSC,
/// so every delay is at least as long as the SDM asks, when neither CPUID nor the PM timer
/// gives the frequency (`tsc.rs`).
pub const UNKNOWN_TICKS_PER_US: u64 = 10_000;

const IA32_BIOS_SIGN_ID: u32 = 0x8B;
const IA32_MTRRCAP: u32 = 0xFE;
const IA32_MTRR_DEF_TYPE: u32 = 0x2FF;
const IA32_PAT: u32 = 0x277;
const FIXED_MTRRS: [u32; 11] = [
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F,
];

/// Which processors to start: the indices into the CPU list of every enabled one but the BSP.
pub fn targets(cpus: &[CpuEntry]) -> Vec<usize> {
    cpus.iter()
        .enumerate()
        .filter(|(_, c)| c.flags.contains(CpuFlags::ENABLED) && !c.flags.contains(CpuFlags::BSP))
        .map(|(i, _)| i)
        .collect()
}

/// Whether the kernel asked for the APs.
pub fn wanted(wants: &Wants) -> bool {
    wants.flag(RequestFlags::START_APS)
}

/// Where AP `slot`'s stack starts (virtual): above the BSP's stack, each above its own
/// unmapped guard page.
pub fn stack_bottom(wants: &Wants, slot: usize) -> u64 {
    wants.stack_base + PAGE + wants.stack_size + PAGE + slot as u64 * (wants.ap_stack_size + PAGE)
}

/// The end of the stack region with `aps` AP stacks.
pub fn stack_region_end(wants: &Wants, aps: usize) -> u64 {
    stack_bottom(wants, aps) - PAGE
}

/// What [`prepare`] set up and [`start`] fills in.
pub struct Aps {
    /// The trampoline page (physical).
    pub page: u64,
    /// The local APIC's MMIO base.
    pub local_apic: u64,
    /// Per started AP: its index in the CPU list.
    pub slots: Vec<usize>,
    /// Per started AP: its mailbox as the loader reaches it.
    pub mailboxes: Vec<*mut CpuMailbox>,
    /// Per started AP: the RSP it is released with, as the loader reaches it.
    pub stack_tops: *mut u64,
    /// Per started AP: the TSC when it reached its 64-bit code (0 before), as the loader
    /// reaches it; for [`start`]'s phase figures.
    stamps: *mut u64,
    /// One record per CPU-list entry (the protocol's `cpu_starts`).
    pub starts: Vec<CpuStart>,
    /// TSC ticks per µs for the delays.
    pub ticks_per_us: u64,
    /// The BSP's facts, for the comparison.
    bsp: Facts,
}

/// What may differ between processors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Facts {
    microcode: u64,
    flags: CpuStartFlags,
    feature_control_after: u64,
}

const COMPARED: u32 = CpuStartFlags::VMX.0
    | CpuStartFlags::SVM.0
    | CpuStartFlags::FEATURE_CONTROL_READ.0
    | CpuStartFlags::VMX_ENABLED_BY_LOADER.0;

impl Facts {
    fn differs(&self, other: &Facts) -> bool {
        self.microcode != other.microcode
            || self.flags.0 & COMPARED != other.flags.0 & COMPARED
            || self.feature_control_after != other.feature_control_after
    }
}

/// CPUID.1:ECX and 80000001h:ECX as `CpuStartFlags` (VMX, SVM, feature control readable).
fn cpuid_flags(ecx1: u32, ext_ecx: u32) -> u32 {
    let mut f = 0;
    if ecx1 & (1 << 5) != 0 {
        f |= CpuStartFlags::VMX.0;
    }
    if ext_ecx & (1 << 2) != 0 {
        f |= CpuStartFlags::SVM.0;
    }
    if ecx1 & (3 << 5) != 0 {
        f |= CpuStartFlags::FEATURE_CONTROL_READ.0;
    }
    f
}

fn is_intel(cpu: &impl Cpu) -> bool {
    let [_, b, c, d] = cpu.cpuid(0, 0);
    [b, d, c] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e]
}

fn ext_ecx(cpu: &impl Cpu) -> u32 {
    if cpu.cpuid(0x8000_0000, 0)[0] >= 0x8000_0001 {
        cpu.cpuid(0x8000_0001, 0)[2]
    } else {
        0
    }
}

/// The BSP's facts: microcode revision (Intel: after writing 0 and CPUID.1, SDM Vol. 3A
/// §10.11.7.1), CPUID, and IA32_FEATURE_CONTROL as the virtualization report has it.
fn bsp_facts(cpu: &impl Cpu, virt: &VirtReport) -> Facts {
    if is_intel(cpu) {
        cpu.wrmsr(IA32_BIOS_SIGN_ID, 0);
        cpu.cpuid(1, 0);
    }
    let microcode = cpu.rdmsr(IA32_BIOS_SIGN_ID) >> 32;
    let mut flags = cpuid_flags(cpu.cpuid(1, 0)[2], ext_ecx(cpu));
    if virt
        .flags
        .contains(hvboot_api::VirtFlags::VMX_ENABLED_BY_LOADER)
    {
        flags |= CpuStartFlags::VMX_ENABLED_BY_LOADER.0;
    }
    Facts {
        microcode,
        flags: CpuStartFlags(flags),
        feature_control_after: virt.feature_control_after,
    }
}

/// The MSRs an AP copies from the BSP: PAT, the fixed and variable MTRRs, MTRRdefType last
/// (SDM Vol. 3A §12.11.8, all processors must agree). Only those CPUID and MTRRCAP report.
pub fn bsp_msrs(cpu: &impl Cpu) -> Vec<(u32, u64)> {
    let edx = cpu.cpuid(1, 0)[3];
    let mut msrs = Vec::new();
    if edx & (1 << 16) != 0 {
        msrs.push((IA32_PAT, cpu.rdmsr(IA32_PAT)));
    }
    if edx & (1 << 12) != 0 {
        let cap = cpu.rdmsr(IA32_MTRRCAP);
        if cap & (1 << 8) != 0 {
            msrs.extend(FIXED_MTRRS.iter().map(|&m| (m, cpu.rdmsr(m))));
        }
        let vcnt = (cap & 0xFF) as u32;
        if vcnt > 16 {
            // The trampoline's MSR list has room for 16 pairs (trampoline::MAX_MSRS); say so
            // rather than leave the APs' caching different from the BSP's without a word.
            log::warn!("the BSP has {vcnt} variable MTRRs: the APs get the first 16 only");
        }
        let vcnt = vcnt.min(16);
        for i in 0..2 * vcnt {
            msrs.push((0x200 + i, cpu.rdmsr(0x200 + i)));
        }
        msrs.push((IA32_MTRR_DEF_TYPE, cpu.rdmsr(IA32_MTRR_DEF_TYPE)));
    }
    msrs.truncate(MAX_MSRS);
    msrs
}

/// The records before start-up: the BSP, the APs to start (not answered yet), and those the
/// MADT does not enable.
fn initial_records(cpus: &[CpuEntry], bsp: &Facts) -> Vec<CpuStart> {
    cpus.iter()
        .map(|c| {
            let state = if c.flags.contains(CpuFlags::BSP) {
                CpuState::BSP
            } else if c.flags.contains(CpuFlags::ENABLED) {
                CpuState::NO_ANSWER
            } else if c.flags.contains(CpuFlags::ONLINE_CAPABLE) {
                CpuState::ONLINE_CAPABLE
            } else {
                CpuState::DISABLED
            };
            let mut s = CpuStart {
                apic_id: c.apic_id,
                acpi_uid: c.acpi_uid,
                state,
                ..CpuStart::default()
            };
            if state == CpuState::BSP {
                s.flags = bsp.flags;
                s.microcode = bsp.microcode;
                s.feature_control_after = bsp.feature_control_after;
            }
            s
        })
        .collect()
}

/// Offsets inside the CPU data: APIC IDs, stack tops, MSRs, mailboxes, GDT slots.
struct DataLayout {
    stack_tops: u64,
    msrs: u64,
    mailboxes: u64,
    gdts: u64,
    stamps: u64,
    size: u64,
}

impl DataLayout {
    fn new(n: u64) -> Self {
        let stack_tops = (4 * n).next_multiple_of(8);
        let msrs = stack_tops + 8 * n;
        // 16 zero bytes at least before the first mailbox: a Limine MP info laid over a
        // mailbox starts 16 bytes before it (protocols/limine.rs, "MP").
        let mailboxes = (msrs + 16 * MAX_MSRS as u64 + 16).next_multiple_of(128);
        let gdts = mailboxes + n * size_of::<CpuMailbox>() as u64;
        let stamps = gdts + n * GDT_SLOT;
        let size = (stamps + 8 * n).next_multiple_of(PAGE);
        Self {
            stack_tops,
            msrs,
            mailboxes,
            gdts,
            stamps,
            size,
        }
    }
}

/// Before the firmware is left: the trampoline and the per-CPU data. `cr3` and the BSP stack
/// come from the address-space phase, which mapped the AP stacks at [`stack_bottom`]; `la57`:
/// `cr3` is a PML5, so the APs turn CR4.LA57 on before paging.
#[allow(clippy::too_many_arguments)]
pub fn prepare<P: Platform>(
    p: &mut P,
    cpu: &impl Cpu,
    wants: &Wants,
    placed: &mut Placed,
    (cr3, direct_map_offset, la57): (u64, u64, bool),
    cpus: &[CpuEntry],
    local_apic: u64,
    virt: &VirtReport,
    tsc_hz: u64,
) -> Result<Aps, Error> {
    let page = placed.ap_start;
    let slots = targets(cpus);
    let n = slots.len() as u64;
    let bsp = bsp_facts(cpu, virt);
    let layout = DataLayout::new(n);
    let data = p
        .allocate(
            MemoryKind::PAGE_TABLES.0,
            layout.size,
            Placement::Below(0xFFFF_FFFF),
        )
        .map_err(Error::no_memory("the APs' mailboxes and GDTs"))?;
    placed
        .extents
        .push(extent(ExtentKind::CPU_DATA, 0, data, 0, layout.size));
    let virt_of = |off: u64| data + off + direct_map_offset;
    // SAFETY: just allocated for this.
    let bytes = unsafe { phys_slice(p, data, layout.size) };
    let msrs = bsp_msrs(cpu);
    for (k, &i) in slots.iter().enumerate() {
        let k8 = k * 8;
        bytes[k * 4..k * 4 + 4].copy_from_slice(&cpus[i].apic_id.to_le_bytes());
        let top = stack_bottom(wants, k) + wants.ap_stack_size;
        let at = layout.stack_tops as usize + k8;
        bytes[at..at + 8].copy_from_slice(&top.to_le_bytes());
        let slot = (layout.gdts + k as u64 * GDT_SLOT) as usize;
        let gdt = handoff::gdt(virt_of(slot as u64 + handoff::TSS_OFFSET));
        for (j, e) in gdt.iter().enumerate() {
            bytes[slot + j * 8..slot + j * 8 + 8].copy_from_slice(&e.to_le_bytes());
        }
        let tss = slot + handoff::TSS_OFFSET as usize;
        bytes[tss..tss + handoff::TSS_SIZE].copy_from_slice(&handoff::tss());
    }
    for (j, &(msr, value)) in msrs.iter().enumerate() {
        let at = layout.msrs as usize + j * 16;
        bytes[at..at + 4].copy_from_slice(&msr.to_le_bytes());
        bytes[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
    }
    let mwait = cpu.cpuid(1, 0)[2] & (1 << 3) != 0;
    let params = ApParams {
        // Accessed bits preset: the page is mapped read-only, and loading a selector whose
        // descriptor lacks the bit makes the CPU write it (SDM Vol. 3A §3.4.5.1).
        gdt: [
            handoff::GDT[0],
            handoff::GDT[1] | 1 << 40,
            handoff::GDT[2] | 1 << 40,
        ],
        gdtr_pad: 0,
        gdtr_limit: 23,
        gdtr_base: (page + trampoline::params_offset() as u64) as u32,
        cr3: cr3 as u32,
        count: n as u32,
        enable_vmx: u32::from(wants.flag(RequestFlags::ENABLE_VMX)),
        msr_count: msrs.len() as u32,
        mwait: u32::from(mwait),
        microcode_write: u32::from(is_intel(cpu)),
        apic_ids: virt_of(0),
        stack_tops: virt_of(layout.stack_tops),
        gdts: virt_of(layout.gdts),
        mailboxes: virt_of(layout.mailboxes),
        msrs: virt_of(layout.msrs),
        long_entry: (page + trampoline::long_offset() as u64) as u32,
        long_selector: 0x08,
        cr4_extra: if la57 { trampoline::CR4_LA57 } else { 0 },
        stamps: virt_of(layout.stamps),
    };
    write_trampoline(p, page, &params);
    let mut starts = initial_records(cpus, &bsp);
    let mut mailboxes = Vec::with_capacity(slots.len());
    for (k, &i) in slots.iter().enumerate() {
        let off = layout.mailboxes + k as u64 * size_of::<CpuMailbox>() as u64;
        mailboxes.push((data + off).wrapping_add(p.phys_offset()) as *mut CpuMailbox);
        let s = &mut starts[i];
        s.stack_bottom = stack_bottom(wants, k);
        s.stack_size = wants.ap_stack_size;
        s.mailbox = virt_of(off);
        if mwait {
            s.flags = CpuStartFlags(s.flags.0 | CpuStartFlags::MWAIT.0);
        }
    }
    let reach = |off: u64| (data + off).wrapping_add(p.phys_offset()) as *mut u64;
    let stack_tops = reach(layout.stack_tops);
    let stamps = reach(layout.stamps);
    Ok(Aps {
        page,
        local_apic,
        slots,
        mailboxes,
        stack_tops,
        stamps,
        starts,
        ticks_per_us: if tsc_hz == 0 {
            UNKNOWN_TICKS_PER_US
        } else {
            tsc_hz.div_ceil(1_000_000)
        },
        bsp,
    })
}

fn write_trampoline<P: Platform>(p: &mut P, page: u64, params: &ApParams) {
    let code = trampoline::code();
    // SAFETY: the trampoline page is the loader's (allocated in `place`).
    let bytes = unsafe { phys_slice(p, page, PAGE) };
    bytes[..code.len()].copy_from_slice(code);
    let at = trampoline::params_offset();
    // SAFETY: ApParams is plain old data; the blob ends with room for it.
    let raw = unsafe {
        core::slice::from_raw_parts(
            (params as *const ApParams).cast::<u8>(),
            size_of::<ApParams>(),
        )
    };
    bytes[at..at + raw.len()].copy_from_slice(raw);
}

fn mailbox_state(m: *mut CpuMailbox) -> MailboxState {
    // SAFETY: the mailbox lies in the CPU data; the AP writes it concurrently, hence volatile.
    unsafe { core::ptr::addr_of!((*m).state).read_volatile() }
}

/// After the firmware is left: INIT to every target, SIPI twice, then wait for all at once.
/// Records who arrived (their own reports) and who did not. Never fails: a CPU that does not
/// answer is reported as `NO_ANSWER` and the boot goes on.
pub fn start(cpu: &impl Cpu, aps: &mut Aps, cpus: &[CpuEntry]) {
    if aps.slots.is_empty() {
        return;
    }
    let wait_us = |us: u64| {
        let end = cpu.rdtsc() + us * aps.ticks_per_us;
        while cpu.rdtsc() < end {
            cpu.pause();
        }
    };
    let vector = (aps.page >> 12) as u8;
    let ids: Vec<u32> = aps.slots.iter().map(|&i| cpus[i].apic_id).collect();
    // The BSP's record carries the TSC of the first INIT: the start of the start-up, against
    // which the APs' `tsc_arrived` stamps measure it (bench/smp_bringup.py).
    let first_init = cpu.rdtsc();
    if let Some(bsp) = aps.starts.iter_mut().find(|s| s.state == CpuState::BSP) {
        bsp.tsc_arrived = first_init;
    }
    for &id in &ids {
        cpu.send_ipi(aps.local_apic, id, Ipi::Init);
    }
    for &id in &ids {
        cpu.send_ipi(aps.local_apic, id, Ipi::InitDeassert);
    }
    let inits_sent = cpu.rdtsc();
    wait_us(INIT_DELAY_US);
    let sipi_start = cpu.rdtsc();
    for &id in &ids {
        cpu.send_ipi(aps.local_apic, id, Ipi::Startup(vector));
    }
    let sipis_sent = cpu.rdtsc();
    wait_us(SIPI_DELAY_US);
    let mut again = 0;
    for (k, &id) in ids.iter().enumerate() {
        if mailbox_state(aps.mailboxes[k]) == MailboxState::EMPTY {
            cpu.send_ipi(aps.local_apic, id, Ipi::Startup(vector));
            again += 1;
        }
    }
    let phases = Phases {
        first_init,
        inits_sent,
        sipi_start,
        sipis_sent,
        second_sipis: (again, cpu.rdtsc()),
    };
    let deadline = cpu.rdtsc() + ANSWER_TIMEOUT_US * aps.ticks_per_us;
    let all = |aps: &Aps| {
        aps.mailboxes
            .iter()
            .all(|&m| mailbox_state(m) != MailboxState::EMPTY)
    };
    while !all(aps) && cpu.rdtsc() < deadline {
        cpu.pause();
    }
    record(aps);
    phases.log(aps);
}

/// The BSP's TSC at each step of [`start`], for the figures it logs (bench/README.md,
/// "Processor bring-up": where the time goes).
struct Phases {
    first_init: u64,
    inits_sent: u64,
    sipi_start: u64,
    sipis_sent: u64,
    /// How many APs got the second SIPI, and the TSC once it was sent.
    second_sipis: (usize, u64),
}

impl Phases {
    /// One line on the console: each step in µs after the first INIT, then the first and
    /// last AP to reach 64-bit code and to park.
    fn log(&self, aps: &Aps) {
        let us = |tsc: u64| tsc.saturating_sub(self.first_init) / aps.ticks_per_us;
        let n = aps.slots.len();
        // SAFETY: `stamps` has one u64 per slot in the CPU data; the APs have written theirs.
        let long = (0..n).map(|k| unsafe { aps.stamps.add(k).read_volatile() });
        let parked = aps.slots.iter().map(|&i| aps.starts[i].tsc_arrived);
        let span = |it: &mut dyn Iterator<Item = u64>| {
            let (lo, hi) = it
                .filter(|&t| t != 0)
                .fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
            if hi == 0 {
                (0, 0)
            } else {
                (us(lo), us(hi))
            }
        };
        let (l0, l1) = span(&mut long.into_iter());
        let (p0, p1) = span(&mut parked.into_iter());
        log::info!(
            "APs: {n} started; µs after the first INIT: INITs sent {}, SIPIs from {} to {}, \
             second SIPIs to {} by {}, 64-bit code first {l0} last {l1}, parked first {p0} \
             last {p1}",
            us(self.inits_sent),
            us(self.sipi_start),
            us(self.sipis_sent),
            self.second_sipis.0,
            us(self.second_sipis.1),
        );
    }
}

/// Copies each arrived AP's own report into its record and flags what differs from the BSP.
fn record(aps: &mut Aps) {
    for (k, &i) in aps.slots.iter().enumerate() {
        let m = aps.mailboxes[k];
        if mailbox_state(m) == MailboxState::EMPTY {
            continue;
        }
        // SAFETY: the AP wrote its report before its state (x86 stores are ordered).
        let mb = unsafe { m.read_volatile() };
        let s = &mut aps.starts[i];
        s.state = CpuState::PARKED;
        s.tsc_arrived = mb.tsc_arrived;
        s.microcode = mb.microcode >> 32;
        s.feature_control_before = mb.feature_control_before;
        s.feature_control_after = mb.feature_control_after;
        let mut f = s.flags.0 | cpuid_flags(mb.cpuid1_ecx, mb.cpuid_ext_ecx);
        if f & CpuStartFlags::VMX.0 != 0
            && mb.feature_control_before & 1 == 0
            && mb.feature_control_after & 5 == 5
        {
            f |= CpuStartFlags::VMX_ENABLED_BY_LOADER.0;
        }
        let facts = Facts {
            microcode: s.microcode,
            flags: CpuStartFlags(f),
            feature_control_after: s.feature_control_after,
        };
        if facts.differs(&aps.bsp) {
            f |= CpuStartFlags::DIFFERS_FROM_BSP.0;
        }
        s.flags = CpuStartFlags(f);
    }
}

/// Once the records are in the boot information at `records_virt` (one `CpuStart` per CPU, in
/// CPU-list order): tells each mailbox where its record is (RDI at release).
pub fn point_mailboxes(aps: &Aps, records_virt: u64) {
    for (k, &i) in aps.slots.iter().enumerate() {
        let at = records_virt + (i * size_of::<CpuStart>()) as u64;
        // SAFETY: the mailbox lies in the CPU data; the AP reads this field only after the
        // kernel released it.
        let m = aps.mailboxes[k];
        unsafe { core::ptr::addr_of_mut!((*m).cpu_start).write_volatile(at) };
    }
}
