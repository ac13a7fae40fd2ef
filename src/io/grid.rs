//! Image grids: n images of h×w (grey, or RGB planes) tiled into one PNG with white padding.
//! Tested by `tests/io.rs` (decoded size and pixel values at known spots).

use super::write_png;
use crate::{Error, Result};
use image::ExtendedColorType;
use std::path::Path;

/// Writes `images` (n × h × w, values in [0, 1], clamped) as a grayscale PNG grid of `n_rows`
/// rows and ⌈n / n_rows⌉ columns, with `padding` white pixels between and around the tiles.
/// Image k sits in row k / columns, column k % columns.
pub fn save_grid(
    path: impl AsRef<Path>,
    images: &[f32],
    n_rows: usize,
    h: usize,
    w: usize,
    padding: usize,
) -> Result<()> {
    let (width, height, pixels) = compose("save_grid", images, 1, n_rows, h, w, padding)?;
    write_png(path.as_ref(), &pixels, width, height, ExtendedColorType::L8)
}

/// Like [`save_grid`] for colour images: `images` is n × 3 × h × w (RGB planes, the layout
/// of an [n, 3, h, w] tensor).
pub fn save_rgb_grid(
    path: impl AsRef<Path>,
    images: &[f32],
    n_rows: usize,
    h: usize,
    w: usize,
    padding: usize,
) -> Result<()> {
    let (width, height, pixels) = compose("save_rgb_grid", images, 3, n_rows, h, w, padding)?;
    write_png(
        path.as_ref(),
        &pixels,
        width,
        height,
        ExtendedColorType::Rgb8,
    )
}

/// Tiles planar images of `c` channels into one interleaved 8-bit canvas:
/// images: [n, c, h, w] -> (width, height, [height, width, c]).
fn compose(
    op: &'static str,
    images: &[f32],
    c: usize,
    n_rows: usize,
    h: usize,
    w: usize,
    padding: usize,
) -> Result<(u32, u32, Vec<u8>)> {
    let per_image = c * h * w;
    if per_image == 0 || images.is_empty() || !images.len().is_multiple_of(per_image) {
        return Err(Error::bad(
            op,
            format!(
                "{} values are not a whole number of {c}×{h}×{w} images",
                images.len()
            ),
        ));
    }
    let n = images.len() / per_image;
    if n_rows == 0 || n_rows > n {
        return Err(Error::bad(op, format!("{n_rows} rows for {n} images")));
    }
    let cols = n.div_ceil(n_rows);
    let width = cols * (w + padding) + padding;
    let height = n_rows * (h + padding) + padding;
    let mut canvas = vec![255u8; width * height * c];
    for (k, image) in images.chunks_exact(per_image).enumerate() {
        let (top, left) = (
            padding + (k / cols) * (h + padding),
            padding + (k % cols) * (w + padding),
        );
        for y in 0..h {
            for x in 0..w {
                let at = ((top + y) * width + left + x) * c;
                for ch in 0..c {
                    canvas[at + ch] = to_u8(image[(ch * h + y) * w + x]);
                }
            }
        }
    }
    Ok((width as u32, height as u32, canvas))
}

/// [0, 1] -> 0..=255, rounded; out-of-range values clamp and NaN becomes 0.
fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}
