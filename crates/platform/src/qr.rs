//! QR codes as images: a payment's QRIS payload, a pickup code. SVG for screens that scale it,
//! PNG (one bit a pixel, black on white, with the four-module quiet zone the standard asks for)
//! for those that print or show bitmaps.

use qrcode::{Color, EcLevel, QrCode};

/// Why `text` cannot be a QR code (it is longer than the largest one holds).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the text does not fit in a QR code")]
pub struct TooLong;

fn code(text: &str) -> Result<QrCode, TooLong> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|_| TooLong)
}

/// `text` as an SVG document.
pub fn svg(text: &str) -> Result<String, TooLong> {
    Ok(code(text)?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build())
}

/// `text` as a PNG image, `scale` pixels a module.
pub fn png(text: &str, scale: usize) -> Result<Vec<u8>, TooLong> {
    let code = code(text)?;
    let modules = code.width();
    let colors = code.to_colors();
    let quiet = 4;
    let scale = scale.max(1);
    let side = (modules + 2 * quiet) * scale;
    let row_bytes = side.div_ceil(8);
    let mut raw = Vec::with_capacity((row_bytes + 1) * side);
    for y in 0..side {
        // Filter type 0: the row as it is.
        raw.push(0);
        let my = (y / scale).checked_sub(quiet).filter(|m| *m < modules);
        let mut row = vec![0xFFu8; row_bytes];
        for x in 0..side {
            let mx = (x / scale).checked_sub(quiet).filter(|m| *m < modules);
            if let (Some(mx), Some(my)) = (mx, my)
                && colors[my * modules + mx] == Color::Dark
            {
                row[x / 8] &= !(0x80 >> (x % 8));
            }
        }
        raw.extend_from_slice(&row);
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(side as u32).to_be_bytes());
    header.extend_from_slice(&(side as u32).to_be_bytes());
    // One bit a pixel, grayscale, deflate, no filter choices, not interlaced.
    header.extend_from_slice(&[1, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib_stored(&raw));
    chunk(&mut png, b"IEND", &[]);
    Ok(png)
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of `data` in stored (uncompressed) deflate blocks: a QR code's bitmap is small,
/// and this needs no compressor.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for byte in data {
        a = (a + u32::from(*byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_their_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn a_png_has_its_chunks_and_size() {
        let png = png("hello", 2).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        // Version 1 is 21 modules; with the quiet zone 29, at two pixels each 58.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 58);
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
        let svg = svg("hello").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(super::svg(&"x".repeat(5000)).is_err());
    }
}
