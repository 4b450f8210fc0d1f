//! CRC-32 as zlib computes it (IEEE 802.3: reflected, polynomial 0xEDB88320,
//! initial value and final XOR 0xFFFFFFFF), with a table built at compile time:
//! what a kernel can check a module with, and what GPT uses (UEFI 2.10 Appendix F;
//! the loader checks GPT headers and entry arrays with it).

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC-32 of `data` (`zlib.crc32(data)` in Python).
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

/// The CRC-32 of the bytes behind `crc` followed by `data` (`zlib.crc32(data, crc)`):
/// `crc32_update(crc32(a), b) == crc32(a ++ b)`.
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

// The check value of the CRC-32 catalogue: crc32(b"123456789") == 0xCBF43926.
const _: () = {
    let data = b"123456789";
    let mut c = 0xFFFF_FFFFu32;
    let mut i = 0;
    while i < data.len() {
        c = TABLE[((c ^ data[i] as u32) & 0xFF) as usize] ^ (c >> 8);
        i += 1;
    }
    assert!(c ^ 0xFFFF_FFFF == 0xCBF4_3926);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_whole_and_in_parts() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32_update(crc32(b"1234"), b"56789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
