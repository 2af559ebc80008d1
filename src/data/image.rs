//! Decoding (JPEG/PNG), resizing to the model's input size, and normalising
//! to [-1, 1] HWC f32, the layout of one row of an NHWC batch.

use image::imageops::FilterType;
use image::RgbImage;
use std::path::Path;

/// Largest width or height accepted (about twice a full-HD frame's width;
/// face crops are 112 px): a small corrupt file whose header claims a huge image is
/// refused before hundreds of megabytes are allocated for it.
pub const MAX_IMAGE_SIDE: u32 = 4096;

/// Why an image could not be used; the loader turns it into an error that
/// names the annotation file and line.
#[derive(Debug)]
pub struct ImageError(pub String);

/// Reads and decodes an RGB image. JPEGs must end with the end-of-image
/// marker: the decoder fills a cut-off file's missing rows with grey rather
/// than failing, and training on half-grey faces would go unnoticed.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ImageError(format!("cannot read {}: {e}", path.display())))?;
    decode_rgb_bytes(&bytes).map_err(|ImageError(m)| ImageError(format!("{}: {m}", path.display())))
}

/// The format of an encoded image whose end is intact: JPEGs must end with
/// the end-of-image marker and PNGs with the `IEND` chunk, or the file was
/// cut off.
pub fn checked_format(bytes: &[u8]) -> Result<image::ImageFormat, ImageError> {
    let format =
        image::guess_format(bytes).map_err(|e| ImageError(format!("unknown image format: {e}")))?;
    // Encoders may pad after the end marker; zero bytes are the only padding accepted.
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let tail = &bytes[..end];
    match format {
        image::ImageFormat::Jpeg if !tail.ends_with(&[0xFF, 0xD9]) || end < 4 => {
            Err(ImageError("truncated JPEG (no end-of-image marker)".into()))
        }
        // IEND's CRC ends in 0x82, so trailing zeros are never part of the chunk.
        image::ImageFormat::Png if !tail.ends_with(b"IEND\xAE\x42\x60\x82") => {
            Err(ImageError("truncated PNG (no IEND chunk)".into()))
        }
        _ => Ok(format),
    }
}

pub fn decode_rgb_bytes(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let format = checked_format(bytes)?;
    let reader = || image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let cannot = |e: image::ImageError| ImageError(format!("cannot decode: {e}"));
    // Decoders allocate the whole image from the header's claim before
    // reading a pixel: check the claim first.
    let (w, h) = reader().into_dimensions().map_err(cannot)?;
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(ImageError(format!(
            "header claims {w}x{h} pixels, more than the {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} accepted"
        )));
    }
    Ok(reader().decode().map_err(cannot)?.to_rgb8())
}

/// Resizes to `size` x `size` with a triangle (bilinear) filter whose support
/// widens when shrinking, so downscaling averages instead of aliasing.
pub fn resize_square(img: RgbImage, size: u32) -> RgbImage {
    if img.width() == size && img.height() == size {
        return img;
    }
    image::imageops::resize(&img, size, size, FilterType::Triangle)
}

/// Maps 0..=255 to [-1, 1], appending HWC values to `out`.
pub fn normalise_into(img: &RgbImage, out: &mut Vec<f32>) {
    out.extend(img.as_raw().iter().map(|&v| v as f32 * (2.0 / 255.0) - 1.0));
}

/// Decode, resize and normalise: the whole path from file to model input.
pub fn load_normalised(path: &Path, size: u32) -> Result<Vec<f32>, ImageError> {
    let img = resize_square(decode_rgb(path)?, size);
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    normalise_into(&img, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 128]));
        let mut buf = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)
            .encode_image(&img)
            .unwrap();
        buf
    }

    #[test]
    fn decodes_resizes_and_normalises() {
        let img = decode_rgb_bytes(&jpeg_bytes(40, 30)).unwrap();
        assert_eq!(img.dimensions(), (40, 30));
        let small = resize_square(img, 16);
        let mut v = Vec::new();
        normalise_into(&small, &mut v);
        assert_eq!(v.len(), 16 * 16 * 3);
        assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
        // Blue is a constant 128 in the source: after filtering it stays near 0.
        assert!(v.iter().skip(2).step_by(3).all(|b| b.abs() < 0.05));
    }

    #[test]
    fn png_decodes_losslessly() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 100, 7]));
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        assert_eq!(decode_rgb_bytes(buf.get_ref()).unwrap(), img);
    }

    #[test]
    fn truncated_and_garbage_files_are_rejected() {
        let full = jpeg_bytes(32, 32);
        let cut = &full[..full.len() / 2];
        let e = decode_rgb_bytes(cut).unwrap_err();
        assert!(e.0.contains("truncated"), "{}", e.0);
        assert!(decode_rgb_bytes(b"not an image at all").is_err());
    }
}
