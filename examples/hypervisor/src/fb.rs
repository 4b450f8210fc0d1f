//! Drawing into the linear framebuffer, through the direct map.

use hvboot_api::{BootInfo, Framebuffer, PixelFormat};

/// Draws colour bars with a white frame in the top-left corner (at most
/// 256x128 pixels).
pub fn draw_test_pattern(info: &BootInfo, fb: &Framebuffer) -> Result<(), &'static str> {
    let bytes_per_pixel = usize::from(fb.bpp).div_ceil(8);
    if !(2..=4).contains(&bytes_per_pixel) {
        return Err("unsupported bits per pixel");
    }
    if (fb.pitch as usize) < fb.width as usize * bytes_per_pixel {
        return Err("pitch smaller than a line");
    }
    let used = u64::from(fb.pitch) * u64::from(fb.height);
    if used > fb.size || !info.in_direct_map(fb.phys_addr, used) {
        return Err("framebuffer outside the direct map");
    }
    let base = info.phys_to_virt(fb.phys_addr) as *mut u8;
    let width = fb.width.min(256);
    let height = fb.height.min(128);
    const BARS: [(u8, u8, u8); 8] = [
        (255, 255, 255),
        (255, 255, 0),
        (0, 255, 255),
        (0, 255, 0),
        (255, 0, 255),
        (255, 0, 0),
        (0, 0, 255),
        (0, 0, 0),
    ];
    for y in 0..height {
        for x in 0..width {
            let border = x < 4 || y < 4 || x + 4 >= width || y + 4 >= height;
            let (r, g, b) = if border {
                (255, 255, 255)
            } else {
                BARS[(x * 8 / width) as usize]
            };
            let pixel = encode(fb, r, g, b).to_le_bytes();
            let offset = y as usize * fb.pitch as usize + x as usize * bytes_per_pixel;
            for (i, &byte) in pixel[..bytes_per_pixel].iter().enumerate() {
                // SAFETY: (x, y) is inside width x height, so the byte is inside
                // pitch * height, which is inside the framebuffer and the direct map.
                unsafe { base.add(offset + i).write_volatile(byte) };
            }
        }
    }
    Ok(())
}

/// A pixel value for 8-bit colour components.
fn encode(fb: &Framebuffer, r: u8, g: u8, b: u8) -> u32 {
    let (r, g, b) = (u32::from(r), u32::from(g), u32::from(b));
    match fb.format {
        PixelFormat::RGB => r | (g << 8) | (b << 16),
        PixelFormat::BGR => b | (g << 8) | (r << 16),
        _ => {
            // Scale each 8-bit component to its mask's width and shift it in place.
            let place = |value: u32, size: u8, shift: u8| -> u32 {
                if size == 0 || size > 32 || shift >= 32 {
                    return 0;
                }
                let scaled = if size >= 8 {
                    value << (size - 8)
                } else {
                    value >> (8 - size)
                };
                scaled.checked_shl(u32::from(shift)).unwrap_or(0)
            };
            place(r, fb.red_mask_size, fb.red_mask_shift)
                | place(g, fb.green_mask_size, fb.green_mask_shift)
                | place(b, fb.blue_mask_size, fb.blue_mask_shift)
        }
    }
}
