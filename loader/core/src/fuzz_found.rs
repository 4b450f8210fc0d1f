//! Inputs the fuzz targets (fuzz/, scripts/fuzz.sh) found to break a parser, each kept as a unit
//! test of the fix (docs/testing.md, "Fuzzing"). The inputs are in `fuzz_found/`.

use alloc::vec;

use crate::elf;

/// `fuzz elf`: a PT_LOAD with p_filesz 0 and a p_offset far past the file. `plan` rightly does
/// not check the offset of a segment with no file bytes, but `copy_into` sliced the image at it
/// and panicked (a loader panic on the machine instead of a boot).
#[test]
fn elf_segment_without_file_bytes_and_its_offset_past_the_file() {
    let image = include_bytes!("fuzz_found/elf-bss-segment-offset-past-file.bin");
    let plan = elf::plan(image).expect("the plan accepts it");
    assert!(plan
        .segments
        .iter()
        .any(|s| s.filesz == 0 && s.offset > image.len() as u64));
    let mut dest = vec![0xAAu8; plan.size() as usize];
    plan.copy_into(image, &mut dest);
    assert!(
        dest.iter().all(|&b| b == 0),
        "a segment without file bytes is all zeros"
    );
}
