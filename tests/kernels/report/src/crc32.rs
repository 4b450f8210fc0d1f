//! CRC-32 as zlib computes it (IEEE 802.3: reflected, polynomial 0xEDB88320,
//! initial value and final XOR 0xFFFFFFFF), with a table built at compile time.

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
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
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
