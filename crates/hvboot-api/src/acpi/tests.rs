//! Host tests with synthetic ACPI tables laid out in a fake physical memory.

use super::*;

/// Fake physical memory: `bytes` at physical address `base`.
struct Mem {
    base: u64,
    bytes: Vec<u8>,
}

impl PhysMemory for Mem {
    fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(phys.checked_sub(self.base)?).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }
}

const BASE: u64 = 0x7f00_0000;
const RSDP_AT: usize = 0x0;
const XSDT_AT: usize = 0x100;
const RSDT_AT: usize = 0x200;
const FACP_AT: usize = 0x300;
const MADT_AT: usize = 0x400;

fn fix_checksum(table: &mut [u8], at: usize) {
    table[at] = 0;
    table[at] = 0u8.wrapping_sub(sum(table));
}

fn sdt(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; HEADER_LEN];
    t[..4].copy_from_slice(sig);
    t[4..8].copy_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
    t[8] = 1;
    t[10..16].copy_from_slice(b"HVBOOT");
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

fn lapic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![0, 8, uid, id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn x2apic(id: u32, flags: u32, uid: u32) -> Vec<u8> {
    let mut e = vec![9, 16, 0, 0];
    e.extend_from_slice(&id.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e
}

fn madt_body(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    body.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for e in entries {
        body.extend_from_slice(e);
    }
    body
}

/// A memory with RSDP (revision 2 or 0), XSDT and RSDT, a FACP and a MADT.
fn machine(revision: u8, entries: &[Vec<u8>]) -> Mem {
    let mut bytes = vec![0u8; 0x1000];
    let put = |bytes: &mut Vec<u8>, at: usize, data: &[u8]| {
        bytes[at..at + data.len()].copy_from_slice(data)
    };
    let facp = sdt(b"FACP", &[0; 8]);
    put(&mut bytes, FACP_AT, &facp);
    let madt = sdt(b"APIC", &madt_body(entries));
    put(&mut bytes, MADT_AT, &madt);
    let mut xsdt_body = Vec::new();
    let mut rsdt_body = Vec::new();
    for at in [FACP_AT, MADT_AT] {
        xsdt_body.extend_from_slice(&(BASE + at as u64).to_le_bytes());
        rsdt_body.extend_from_slice(&((BASE + at as u64) as u32).to_le_bytes());
    }
    put(&mut bytes, XSDT_AT, &sdt(b"XSDT", &xsdt_body));
    put(&mut bytes, RSDT_AT, &sdt(b"RSDT", &rsdt_body));
    let mut rsdp = vec![0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(b"HVBOOT");
    rsdp[15] = revision;
    rsdp[16..20].copy_from_slice(&((BASE + RSDT_AT as u64) as u32).to_le_bytes());
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    rsdp[24..32].copy_from_slice(&(BASE + XSDT_AT as u64).to_le_bytes());
    let v1_sum = 0u8.wrapping_sub(sum(&rsdp[..20]));
    rsdp[8] = v1_sum;
    fix_checksum(&mut rsdp, 32);
    put(&mut bytes, RSDP_AT, &rsdp);
    Mem { base: BASE, bytes }
}

fn four_cpus() -> Vec<Vec<u8>> {
    vec![
        lapic(0, 0, 1),
        lapic(1, 1, 1),
        lapic(2, 2, 2),                                  // online capable, not enabled
        lapic(3, 3, 0),                                  // unusable
        vec![1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0], // an I/O APIC: ignored
    ]
}

#[test]
fn madt_from_xsdt() {
    let mem = machine(2, &four_cpus());
    assert_eq!(find_table(&mem, BASE, b"APIC"), Ok(BASE + MADT_AT as u64));
    let madt = Madt::find(&mem, BASE).unwrap();
    assert_eq!(madt.local_apic_phys(), 0xfee0_0000);
    assert_eq!(madt.flags(), MADT_PCAT_COMPAT);
    let cpus: Vec<CpuEntry> = madt.cpus(Some(1)).collect();
    assert_eq!(cpus.len(), 4);
    assert_eq!(
        cpus.iter().map(|c| c.apic_id).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(cpus[0].flags, CpuFlags::ENABLED);
    assert_eq!(cpus[1].flags, CpuFlags::ENABLED | CpuFlags::BSP);
    assert_eq!(cpus[2].flags, CpuFlags::ONLINE_CAPABLE);
    assert_eq!(cpus[3].flags, CpuFlags::EMPTY);
    assert!(cpus[2].usable() && !cpus[3].usable());
    assert_eq!(cpus[2].acpi_uid, 2);

    let mut out = [CpuEntry::default(); 2];
    assert_eq!(madt.cpus_into(None, &mut out), 4);
    assert_eq!(out[1].apic_id, 1);
}

#[test]
fn madt_from_rsdt_with_acpi_1_rsdp() {
    let mem = machine(0, &four_cpus());
    let madt = Madt::find(&mem, BASE).unwrap();
    assert_eq!(madt.cpus(None).count(), 4);
}

#[test]
fn x2apic_entries_and_address_override() {
    let mut entries = vec![lapic(0, 0, 1), x2apic(0x100, 1, 7)];
    let mut over = vec![5, 12, 0, 0];
    over.extend_from_slice(&0x1_fee0_0000u64.to_le_bytes());
    entries.push(over);
    let mem = machine(2, &entries);
    let madt = Madt::find(&mem, BASE).unwrap();
    let cpus: Vec<CpuEntry> = madt.cpus(Some(0x100)).collect();
    assert_eq!(cpus.len(), 2);
    assert_eq!(cpus[1].apic_id, 0x100);
    assert_eq!(cpus[1].acpi_uid, 7);
    assert_eq!(
        cpus[1].flags,
        CpuFlags::ENABLED | CpuFlags::BSP | CpuFlags::X2APIC
    );
    assert_eq!(madt.local_apic_phys(), 0x1_fee0_0000);
}

#[test]
fn corruption_is_reported() {
    let good = machine(2, &four_cpus());
    assert_eq!(find_table(&good, 0, b"APIC"), Err(AcpiError::NoRsdp));
    assert_eq!(
        find_table(&good, 0x1000, b"APIC"),
        Err(AcpiError::Unreadable(0x1000))
    );

    let mut m = machine(2, &four_cpus());
    m.bytes[RSDP_AT] = b'X';
    assert_eq!(Madt::find(&m, BASE).unwrap_err(), AcpiError::BadRsdp);

    let mut m = machine(2, &four_cpus());
    m.bytes[RSDP_AT + 33] ^= 1; // breaks the extended checksum only
    assert_eq!(Madt::find(&m, BASE).unwrap_err(), AcpiError::BadRsdp);

    let mut m = machine(2, &four_cpus());
    m.bytes[MADT_AT + 50] ^= 0x40; // MADT checksum
    assert_eq!(
        Madt::find(&m, BASE).unwrap_err(),
        AcpiError::BadTable(*b"APIC")
    );

    let mut m = machine(2, &four_cpus());
    m.bytes[XSDT_AT + 4..XSDT_AT + 8].copy_from_slice(&20u32.to_le_bytes());
    assert_eq!(
        Madt::find(&m, BASE).unwrap_err(),
        AcpiError::BadTable(*b"XSDT")
    );

    // A MADT without the table in the XSDT.
    let mut m = machine(2, &four_cpus());
    m.bytes[MADT_AT] = b'Q';
    assert_eq!(Madt::find(&m, BASE).unwrap_err(), AcpiError::NoMadt);

    // Entries: a zero length, a length past the end, a short type-0 entry.
    for bad in [vec![0u8, 0], vec![0, 40, 0, 0], vec![0, 6, 0, 0, 1, 0]] {
        let t = sdt(b"APIC", &madt_body(&[lapic(0, 0, 1), bad]));
        assert_eq!(
            Madt::parse(&t).unwrap_err(),
            AcpiError::BadEntry { offset: 52 }
        );
    }
    assert!(Madt::parse(&sdt(b"APIC", &[0; 4])).is_err());
}

#[test]
fn fuzzed_tables_never_panic() {
    let base = machine(2, &four_cpus());
    let mut seed = 0x1234_5678_9abc_def0u64;
    for _ in 0..2000 {
        let mut m = Mem {
            base: BASE,
            bytes: base.bytes.clone(),
        };
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % 0x500;
            m.bytes[at] = (seed >> 32) as u8;
        }
        if let Ok(madt) = Madt::find(&m, BASE) {
            let _ = madt.cpus(Some(0)).count();
            let _ = madt.local_apic_phys();
        }
    }
}
