//! Colourised Fashion-MNIST, made deterministically from the grey images: each class has 2–4
//! colour schemes (a body colour and a band colour over the lower rows), and each image takes
//! one of its class's schemes from a hash of (seed, index), so the true modes of every grey
//! image are known. Colour is stored as chroma planes (U, V of YUV) with Y = the grey image.
//! Tests: `tests/colorize.rs` (same seed → same bytes).

use super::Split;
use crate::engine::{Error, Result};

/// A colour as chroma (U, V); (0, 0) is neutral grey.
pub type Chroma = [f32; 2];

const NEUTRAL: Chroma = [0.0, 0.0];
const RED: Chroma = [-0.1, 0.35];
const BLUE: Chroma = [0.3, -0.1];
const GREEN: Chroma = [-0.2, -0.25];
const YELLOW: Chroma = [-0.3, 0.1];
const PURPLE: Chroma = [0.2, 0.25];
const ORANGE: Chroma = [-0.2, 0.3];
const CYAN: Chroma = [0.1, -0.3];

/// Rows from which a scheme's band colour applies (a sneaker's stripe, a boot's sole).
pub const BAND_FROM_ROW: usize = 18;

/// (body, band) colour schemes per Fashion-MNIST class, in class order.
pub const SCHEMES: [&[(Chroma, Chroma)]; 10] = [
    &[(RED, RED), (BLUE, BLUE), (GREEN, GREEN)], // T-shirt/top
    &[(BLUE, BLUE), (YELLOW, YELLOW)],           // Trouser
    &[
        (GREEN, GREEN),
        (PURPLE, PURPLE),
        (ORANGE, ORANGE),
        (BLUE, BLUE),
    ], // Pullover
    &[(RED, RED), (PURPLE, PURPLE)],             // Dress
    &[(GREEN, GREEN), (YELLOW, YELLOW), (BLUE, BLUE)], // Coat
    &[(ORANGE, ORANGE), (CYAN, CYAN)],           // Sandal
    &[(BLUE, BLUE), (RED, RED)],                 // Shirt
    &[(NEUTRAL, RED), (NEUTRAL, BLUE), (GREEN, NEUTRAL)], // Sneaker
    &[(PURPLE, PURPLE), (YELLOW, YELLOW), (GREEN, GREEN)], // Bag
    &[(NEUTRAL, ORANGE), (RED, RED)],            // Ankle boot
];

/// SplitMix64: a counter-based hash, so that an image's scheme depends only on (seed, index).
pub fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Grey images with their colour fields.
#[derive(Clone, Debug)]
pub struct Colourised {
    /// `[n, h·w]` in [0, 1] (the luminance Y).
    pub grey: Vec<f32>,
    /// `[n, 2, h, w]`: U and V planes.
    pub chroma: Vec<f32>,
    /// The class of each image (its scheme table), or none for photographs.
    pub labels: Vec<u8>,
    /// The scheme each image was coloured with (an index into its class's schemes).
    pub schemes: Vec<u8>,
    pub side: (usize, usize),
}

/// The colour field of grey image `grey` (`h·w`) under `scheme`: chroma = grey × colour, so the
/// background (0) stays neutral; `out` receives `[2, h, w]`.
pub fn paint(grey: &[f32], (h, w): (usize, usize), scheme: (Chroma, Chroma), out: &mut Vec<f32>) {
    for c in 0..2 {
        for y in 0..h {
            let colour = if y >= BAND_FROM_ROW * h / 28 {
                scheme.1
            } else {
                scheme.0
            };
            out.extend(grey[y * w..(y + 1) * w].iter().map(|&g| g * colour[c]));
        }
    }
}

impl Colourised {
    /// Colours `split`'s images: image i takes scheme `mix(seed, i) mod` its class's count.
    pub fn from_split(split: &Split, seed: u64) -> Colourised {
        let side = split.dims();
        let n = split.len();
        let (mut chroma, mut schemes) = (Vec::with_capacity(n * 2 * side.0 * side.1), Vec::new());
        for i in 0..n {
            let table = SCHEMES[split.labels()[i] as usize % 10];
            let s = (mix(seed, i as u64) % table.len() as u64) as usize;
            paint(split.image(i), side, table[s], &mut chroma);
            schemes.push(s as u8);
        }
        Colourised {
            grey: split.images().to_vec(),
            chroma,
            labels: split.labels().to_vec(),
            schemes,
            side,
        }
    }

    /// Images from RGB pixels `[n, h, w, 3]` in [0, 1] (photograph patches): Y and (U, V) of
    /// BT.601; no labels or schemes.
    pub fn from_rgb(rgb: &[f32], n: usize, side: (usize, usize)) -> Result<Colourised> {
        let px = side.0 * side.1;
        if rgb.len() != n * px * 3 || n == 0 {
            let why = format!("{} values are not {n} RGB images of {side:?}", rgb.len());
            return Err(Error::bad("Colourised::from_rgb", why));
        }
        let (mut grey, mut chroma) = (Vec::with_capacity(n * px), vec![0.0; n * 2 * px]);
        for (i, img) in rgb.chunks_exact(px * 3).enumerate() {
            for (p, c) in img.chunks_exact(3).enumerate() {
                let y = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
                grey.push(y);
                chroma[i * 2 * px + p] = 0.492 * (c[2] - y);
                chroma[i * 2 * px + px + p] = 0.877 * (c[0] - y);
            }
        }
        Ok(Colourised {
            grey,
            chroma,
            labels: Vec::new(),
            schemes: Vec::new(),
            side,
        })
    }

    pub fn len(&self) -> usize {
        self.grey.len() / self.pixels()
    }

    pub fn is_empty(&self) -> bool {
        self.grey.is_empty()
    }

    pub fn pixels(&self) -> usize {
        self.side.0 * self.side.1
    }

    /// Image i's grey values `[h·w]`.
    pub fn grey_of(&self, i: usize) -> &[f32] {
        &self.grey[i * self.pixels()..(i + 1) * self.pixels()]
    }

    /// Image i's colour field `[2, h, w]`.
    pub fn chroma_of(&self, i: usize) -> &[f32] {
        let n = 2 * self.pixels();
        &self.chroma[i * n..(i + 1) * n]
    }

    /// Every colour field image i's class allows (one per scheme), or none for photographs.
    pub fn modes_of(&self, i: usize) -> Vec<Vec<f32>> {
        let Some(&label) = self.labels.get(i) else {
            return Vec::new();
        };
        SCHEMES[label as usize % 10]
            .iter()
            .map(|&s| {
                let mut out = Vec::new();
                paint(self.grey_of(i), self.side, s, &mut out);
                out
            })
            .collect()
    }

    /// The first `n` images.
    pub fn take(&self, n: usize) -> Colourised {
        let n = n.min(self.len());
        let px = self.pixels();
        Colourised {
            grey: self.grey[..n * px].to_vec(),
            chroma: self.chroma[..n * 2 * px].to_vec(),
            labels: self.labels.iter().take(n).copied().collect(),
            schemes: self.schemes.iter().take(n).copied().collect(),
            side: self.side,
        }
    }
}

/// RGB planes `[3, h, w]` in [0, 1] (clamped) of luminance `grey` `[h·w]` and chroma
/// `[2, h, w]` (BT.601 YUV → RGB).
pub fn to_rgb(grey: &[f32], chroma: &[f32]) -> Vec<f32> {
    let px = grey.len();
    let mut out = vec![0.0; 3 * px];
    for p in 0..px {
        let (y, u, v) = (grey[p], chroma[p], chroma[px + p]);
        out[p] = (y + 1.140 * v).clamp(0.0, 1.0);
        out[px + p] = (y - 0.395 * u - 0.581 * v).clamp(0.0, 1.0);
        out[2 * px + p] = (y + 2.032 * u).clamp(0.0, 1.0);
    }
    out
}
