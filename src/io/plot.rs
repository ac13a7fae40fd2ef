//! Plots without a plotting crate: class-coloured scatters and line plots as PNG, axis lines
//! but no text (the ranges come back as [`Axes`]). Tested by `tests/io.rs`.

use super::write_png;
use crate::{Error, Result};
use image::ExtendedColorType;
use std::path::Path;

/// Ten distinct colours (matplotlib's tab10): class `c`, or series `i`, is drawn in
/// `PALETTE[c % 10]`.
pub const PALETTE: [[u8; 3]; 10] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x7f, 0x7f, 0x7f],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
];
const WHITE: [u8; 3] = [255, 255, 255];
/// Colour of the axis lines (left and bottom).
pub const AXIS: [u8; 3] = [40, 40, 40];
/// Colour of the x = 0 and y = 0 lines, when inside the range.
pub const ZERO: [u8; 3] = [200, 200, 200];

/// What a plot shows: data ranges and how they map to pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axes {
    pub x: (f32, f32),
    pub y: (f32, f32),
    pub width: u32,
    pub height: u32,
    /// Pixels between the image border and the data area; the axis lines sit in the middle.
    pub margin: u32,
}

impl Axes {
    /// Pixel coordinates (column, row; row 0 at the top) of the data point (x, y).
    pub fn to_pixel(&self, x: f32, y: f32) -> (f32, f32) {
        let m = self.margin as f32;
        let (w, h) = (
            (self.width - 1) as f32 - 2.0 * m,
            (self.height - 1) as f32 - 2.0 * m,
        );
        (
            m + (x - self.x.0) / (self.x.1 - self.x.0) * w,
            m + h - (y - self.y.0) / (self.y.1 - self.y.0) * h,
        )
    }
}

impl std::fmt::Display for Axes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "x ∈ [{}, {}], y ∈ [{}, {}]",
            self.x.0, self.x.1, self.y.0, self.y.1
        )
    }
}

/// Writes a `size`×`size` scatter of `points`, point i as a dot of colour
/// `PALETTE[classes[i] % 10]`, on white with left/bottom axes and light zero lines.
/// Non-finite points are skipped. Returns the ranges shown (5 % beyond the data).
pub fn scatter_png(
    path: impl AsRef<Path>,
    points: &[(f32, f32)],
    classes: &[u8],
    size: u32,
) -> Result<Axes> {
    if points.len() != classes.len() {
        return Err(Error::bad(
            "scatter_png",
            format!("{} points but {} classes", points.len(), classes.len()),
        ));
    }
    let finite = |&&(x, y): &&(f32, f32)| x.is_finite() && y.is_finite();
    let axes = Axes {
        x: padded_range(points.iter().filter(finite).map(|p| p.0)),
        y: padded_range(points.iter().filter(finite).map(|p| p.1)),
        width: size,
        height: size,
        margin: margin("scatter_png", size, size)?,
    };
    let mut canvas = Canvas::new(&axes);
    canvas.frame(&axes);
    let radius = (size as f32 / 256.0).max(1.5);
    for (&(x, y), &c) in points.iter().zip(classes) {
        if x.is_finite() && y.is_finite() {
            let (px, py) = axes.to_pixel(x, y);
            canvas.disc(px, py, radius, PALETTE[c as usize % 10]);
        }
    }
    write_png(
        path.as_ref(),
        &canvas.rgb,
        size,
        size,
        ExtendedColorType::Rgb8,
    )?;
    Ok(axes)
}

/// Writes a `size` = (width, height) line plot: series i as a polyline of colour
/// `PALETTE[i % 10]` over x = 0, 1, …; the name is for error messages and your legend.
/// Non-finite values break the line. Returns the ranges shown (y 5 % beyond the data).
pub fn line_plot_png(
    path: impl AsRef<Path>,
    series: &[(&str, &[f32])],
    size: (u32, u32),
) -> Result<Axes> {
    if series.is_empty() {
        return Err(Error::bad("line_plot_png", "no series to plot"));
    }
    if let Some((name, _)) = series.iter().find(|(_, v)| v.is_empty()) {
        return Err(Error::bad(
            "line_plot_png",
            format!("series `{name}` is empty"),
        ));
    }
    let longest = series.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let axes = Axes {
        x: (0.0, (longest - 1).max(1) as f32),
        y: padded_range(series.iter().flat_map(|(_, v)| v.iter().copied())),
        width: size.0,
        height: size.1,
        margin: margin("line_plot_png", size.0, size.1)?,
    };
    let mut canvas = Canvas::new(&axes);
    canvas.frame(&axes);
    // Half-width ≥ 0.75 px: a disc that wide covers a pixel wherever its centre falls.
    let stroke = (size.1 as f32 / 400.0).max(0.75);
    for (i, (_, values)) in series.iter().enumerate() {
        let colour = PALETTE[i % 10];
        let point = |j: usize| axes.to_pixel(j as f32, values[j]);
        for j in 0..values.len() {
            if !values[j].is_finite() {
                continue;
            }
            let (x0, y0) = point(j);
            if j + 1 < values.len() && values[j + 1].is_finite() {
                let (x1, y1) = point(j + 1);
                canvas.segment((x0, y0), (x1, y1), stroke, colour);
            } else {
                canvas.disc(x0, y0, stroke, colour); // an isolated point stays visible
            }
        }
    }
    write_png(
        path.as_ref(),
        &canvas.rgb,
        size.0,
        size.1,
        ExtendedColorType::Rgb8,
    )?;
    Ok(axes)
}

/// A margin of 5 % of the shorter side (at least 4 px), refusing images too small to plot in.
fn margin(op: &'static str, width: u32, height: u32) -> Result<u32> {
    if width.min(height) < 32 {
        return Err(Error::bad(
            op,
            format!("a {width}×{height} plot is too small; use at least 32×32"),
        ));
    }
    Ok((width.min(height) / 20).max(4))
}

/// The range of the finite values, widened by 5 % on each side; (−1, 1) around a single
/// value or when there is none.
fn padded_range(values: impl Iterator<Item = f32>) -> (f32, f32) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (-1.0, 1.0);
    }
    if lo == hi {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// An RGB image being drawn on.
struct Canvas {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(axes: &Axes) -> Canvas {
        Canvas {
            width: axes.width,
            height: axes.height,
            rgb: WHITE.repeat((axes.width * axes.height) as usize),
        }
    }

    fn set(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        if (0..self.width as i64).contains(&x) && (0..self.height as i64).contains(&y) {
            let at = 3 * (y as usize * self.width as usize + x as usize);
            self.rgb[at..at + 3].copy_from_slice(&colour);
        }
    }

    /// Zero lines inside the data area, then the left and bottom axes halfway into the margin.
    fn frame(&mut self, axes: &Axes) {
        let (w, h) = (self.width as i64, self.height as i64);
        let (zx, zy) = axes.to_pixel(0.0, 0.0);
        if axes.x.0 < 0.0 && axes.x.1 > 0.0 {
            (0..h).for_each(|y| self.set(zx.round() as i64, y, ZERO));
        }
        if axes.y.0 < 0.0 && axes.y.1 > 0.0 {
            (0..w).for_each(|x| self.set(x, zy.round() as i64, ZERO));
        }
        let m = (axes.margin / 2) as i64;
        (0..h).for_each(|y| self.set(m, y, AXIS));
        (0..w).for_each(|x| self.set(x, h - 1 - m, AXIS));
    }

    /// A filled disc centred at (cx, cy).
    fn disc(&mut self, cx: f32, cy: f32, r: f32, colour: [u8; 3]) {
        let reach = r.ceil() as i64;
        let (ix, iy) = (cx.round() as i64, cy.round() as i64);
        for y in iy - reach..=iy + reach {
            for x in ix - reach..=ix + reach {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                if dx * dx + dy * dy <= r * r {
                    self.set(x, y, colour);
                }
            }
        }
    }

    /// A segment of half-width `r`, stamped as discs every half pixel.
    fn segment(&mut self, a: (f32, f32), b: (f32, f32), r: f32, colour: [u8; 3]) {
        let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) * 2.0)
            .ceil()
            .max(1.0) as usize;
        for s in 0..=steps {
            let t = s as f32 / steps as f32;
            self.disc(a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1), r, colour);
        }
    }
}
