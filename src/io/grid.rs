//! Image grids: n images of h×w (grey, or RGB planes) tiled into one PNG with white padding,
//! optionally with a label beside each row and a title above, drawn in the built-in 5×7 font.
//! Tested by `tests/io.rs` (decoded size and pixel values at known spots) and `tests/outputs.rs`.

use super::font::{GLYPH, draw_text, text_width};
use super::write_png;
use crate::{Error, Result};
use image::ExtendedColorType;
use std::path::Path;

/// Writes `images` (n × h × w, values in 0..=1, clamped) as a grayscale PNG grid of `n_rows`
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
/// of an `[n, 3, h, w]` tensor).
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

/// What a reader needs to read a grid: a title line above it and a label left of each row.
#[derive(Clone, Copy, Debug, Default)]
pub struct GridLabels<'a> {
    pub title: Option<&'a str>,
    /// One label per row (or none), e.g. the class of a row of samples.
    pub rows: &'a [&'a str],
}

/// Font pixels are drawn as `LABEL_SCALE`×`LABEL_SCALE` blocks: 14-pixel letters beside
/// 28-pixel images.
const LABEL_SCALE: usize = 2;

/// Like [`save_grid`] with `labels`: row labels right-aligned in a white column left of the
/// grid, each centred on its row, and the title in a band above; text is black ASCII (other
/// characters show as `?`).
pub fn save_labelled_grid(
    path: impl AsRef<Path>,
    images: &[f32],
    n_rows: usize,
    side: (usize, usize),
    padding: usize,
    labels: GridLabels<'_>,
) -> Result<()> {
    save_labelled_planes(path, images, 1, n_rows, side, padding, labels)
}

/// Like [`save_labelled_grid`] for images of `channels` planes: `images` is
/// n × `channels` × h × w, written as a grey (1) or RGB (3, the planes in that order) PNG.
pub fn save_labelled_planes(
    path: impl AsRef<Path>,
    images: &[f32],
    channels: usize,
    n_rows: usize,
    side: (usize, usize),
    padding: usize,
    labels: GridLabels<'_>,
) -> Result<()> {
    let op = "save_labelled_planes";
    let colour = match channels {
        1 => ExtendedColorType::L8,
        3 => ExtendedColorType::Rgb8,
        c => return Err(Error::bad(op, format!("{c} channels; 1 (grey) or 3 (RGB)"))),
    };
    let (width, height, canvas) = labelled(op, (images, channels, n_rows, side, padding), labels)?;
    write_png(path.as_ref(), &canvas, width, height, colour)
}

/// The canvas of a labelled grid of (images `[n, c, h, w]`, c, rows, (h, w), padding):
/// (width, height, `[height, width, c]`).
fn labelled(
    op: &'static str,
    (images, c, n_rows, (h, w), padding): (&[f32], usize, usize, (usize, usize), usize),
    labels: GridLabels<'_>,
) -> Result<(u32, u32, Vec<u8>)> {
    if !labels.rows.is_empty() && labels.rows.len() != n_rows {
        return Err(Error::bad(
            op,
            format!("{} row labels for {n_rows} rows", labels.rows.len()),
        ));
    }
    let (gw, gh, grid) = compose(op, images, c, n_rows, h, w, padding)?;
    let (gw, gh) = (gw as usize, gh as usize);
    let s = LABEL_SCALE;
    let text_h = GLYPH.1 * s;
    let gap = 2 * s;
    let left = match labels.rows.iter().map(|l| text_width(l, s)).max() {
        Some(widest) if widest > 0 => widest + 2 * gap,
        _ => 0,
    };
    let top = if labels.title.is_some() {
        text_h + 2 * gap
    } else {
        0
    };
    let title_w = labels.title.map_or(0, |t| text_width(t, s) + 2 * gap);
    let width = (left + gw).max(title_w);
    let height = top + gh;
    let mut canvas = vec![255u8; width * height * c];
    for y in 0..gh {
        let at = ((top + y) * width + left) * c;
        canvas[at..at + gw * c].copy_from_slice(&grid[y * gw * c..(y + 1) * gw * c]);
    }
    for (r, label) in labels.rows.iter().enumerate() {
        let centre = top + padding + r * (h + padding) + h / 2;
        let x = left - gap - text_width(label, s);
        draw_text(
            &mut canvas,
            width,
            c,
            (x, centre.saturating_sub(text_h / 2)),
            label,
            s,
            0,
        );
    }
    if let Some(title) = labels.title {
        draw_text(&mut canvas, width, c, (gap, gap), title, s, 0);
    }
    Ok((width as u32, height as u32, canvas))
}

/// Tiles planar images of `c` channels into one interleaved 8-bit canvas:
/// images: `[n, c, h, w]` -> (width, height, `[height, width, c]`).
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

/// 0..=1 -> 0..=255, rounded; out-of-range values clamp and NaN becomes 0.
fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Writes `reconstructions.png` into `out`: four pairs of rows, 8 of the `originals` labelled
/// "original" and their `reconstructions` below, labelled "reconstruction" (each at least 32
/// square images of `side`² values), under `title`.
pub fn save_reconstructions(
    out: &Path,
    originals: &[f32],
    reconstructions: &[f32],
    side: usize,
    title: &str,
) -> Result<()> {
    let row = 8 * side * side;
    if originals.len() < 4 * row || reconstructions.len() < 4 * row {
        let why = format!(
            "needs 32 images of {side}x{side} on each side, got {} and {} values",
            originals.len(),
            reconstructions.len()
        );
        return Err(Error::bad("save_reconstructions", why));
    }
    let mut grid = Vec::with_capacity(8 * row);
    for r in 0..4 {
        grid.extend_from_slice(&originals[r * row..(r + 1) * row]);
        grid.extend_from_slice(&reconstructions[r * row..(r + 1) * row]);
    }
    let rows = ["original", "reconstruction"].repeat(4);
    let labels = GridLabels {
        title: Some(title),
        rows: &rows,
    };
    save_labelled_grid(
        out.join("reconstructions.png"),
        &grid,
        8,
        (side, side),
        2,
        labels,
    )
}
