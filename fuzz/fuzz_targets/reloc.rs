//! Any bytes as a position-independent kernel (loader/core/src/reloc.rs, through `elf::check`):
//! the dynamic-section and relocation checks never panic, every refusal names its field; an
//! accepted ET_DYN plan moves by its default slide and by one taken from the input (or is
//! refused, never wrapping), and is laid out and relocated as the loader does (up to 64 MiB)
//! with every write inside the image.
#![no_main]

use hvboot_loader_core::elf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plan = match elf::check(data) {
        Ok(plan) => plan,
        Err(all) => {
            for e in &all {
                if let elf::ElfError::Dynamic(p) = e {
                    assert!(!p.field.is_empty() && !p.message.is_empty());
                }
            }
            return;
        }
    };
    let Some(r) = &plan.relocations else {
        assert!(plan.slid(1 << 21).is_none(), "a fixed-address kernel moved");
        return;
    };
    assert_eq!(r.slide, 0);
    let tail = data.len().saturating_sub(8);
    let chosen = data
        .get(tail..)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
        & !0xfff;
    for slide in [plan.default_slide(), chosen] {
        let Some(slid) = plan.slid(slide) else {
            assert_ne!(slide, plan.default_slide(), "elf::check accepted it at its default slide");
            continue;
        };
        assert_eq!(slid.size(), plan.size());
        assert_eq!(slid.virt_start, plan.virt_start.wrapping_add(slide));
        if slid.size() <= 64 << 20 {
            let mut dest = vec![0u8; slid.size() as usize];
            slid.copy_into(data, &mut dest);
            slid.relocate(data, &mut dest);
        }
    }
});
