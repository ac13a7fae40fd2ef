//! Moving Fashion-MNIST, made deterministically: scenes of one or two items (Fashion-MNIST images
//! halved to 14×14) on a 32×32 canvas, each moving over T future frames by one of its class's
//! 2–3 motion modes (trousers slide left or right, bags stay or fall, …) chosen by a hash of
//! (seed, scene, item). The target is the dense trajectory: per 4×4 cell of the canvas, the
//! displacement at every future frame of the item under the cell's centre (0 for background).
//! Tests: `tests/forecast.rs` (same seed → same bytes).

use super::Split;
use super::colour::mix;

/// Canvas side in pixels.
pub const SIDE: usize = 32;
/// Item side in pixels (a 28×28 image averaged over 2×2 blocks).
pub const ITEM: usize = 14;
/// Future frames predicted.
pub const FRAMES: usize = 4;
/// Trajectory cell side in pixels, and the cells per canvas side.
pub const CELL: usize = 4;
pub const CELLS: usize = SIDE / CELL;
/// Values of one dense trajectory: `[FRAMES, 2, CELLS, CELLS]`, in cells (pixels / CELL).
pub const TRAJECTORY: usize = FRAMES * 2 * CELLS * CELLS;

/// One motion mode: velocity (pixels per frame) and downward acceleration (pixels per frame²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Motion {
    pub v: [f32; 2],
    pub fall: f32,
}

const fn slide(x: f32, y: f32) -> Motion {
    Motion {
        v: [x, y],
        fall: 0.0,
    }
}

const STAY: Motion = slide(0.0, 0.0);
const LEFT: Motion = slide(-2.0, 0.0);
const RIGHT: Motion = slide(2.0, 0.0);
const UP: Motion = slide(0.0, -2.0);
const DOWN: Motion = slide(0.0, 2.0);
const FALL: Motion = Motion {
    v: [0.0, 0.0],
    fall: 1.0,
};

/// Motion modes per Fashion-MNIST class, in class order.
pub const MODES: [&[Motion]; 10] = [
    &[LEFT, RIGHT],                        // T-shirt/top
    &[LEFT, RIGHT],                        // Trouser
    &[UP, DOWN],                           // Pullover
    &[LEFT, RIGHT, STAY],                  // Dress
    &[slide(-1.5, -1.5), slide(1.5, 1.5)], // Coat
    &[RIGHT, STAY],                        // Sandal
    &[LEFT, UP],                           // Shirt
    &[slide(2.5, 0.0), slide(-2.5, 0.0)],  // Sneaker
    &[STAY, FALL],                         // Bag
    &[UP, RIGHT, STAY],                    // Ankle boot
];

impl Motion {
    /// Displacement (pixels) after `t` frames.
    pub fn at(&self, t: usize) -> [f32; 2] {
        let t = t as f32;
        [self.v[0] * t, self.v[1] * t + 0.5 * self.fall * t * t]
    }
}

/// One item of a scene.
#[derive(Clone, Debug)]
pub struct Item {
    /// `[ITEM, ITEM]` grey values.
    pub image: Vec<f32>,
    /// Top-left corner on the canvas.
    pub at: (usize, usize),
    pub class: u8,
    pub mode: u8,
}

impl Item {
    /// Whether the item covers canvas pixel (x, y) (grey above 0.1).
    fn covers(&self, x: usize, y: usize) -> bool {
        let (ix, iy) = (x.wrapping_sub(self.at.0), y.wrapping_sub(self.at.1));
        ix < ITEM && iy < ITEM && self.image[iy * ITEM + ix] > 0.1
    }

    pub fn motion(&self) -> Motion {
        MODES[self.class as usize][self.mode as usize]
    }
}

/// A scene: its items, left to right.
#[derive(Clone, Debug)]
pub struct Scene {
    pub items: Vec<Item>,
}

impl Scene {
    /// The canvas `[SIDE, SIDE]` with item i displaced by `shift[i]` pixels (rounded; clipped
    /// at the border; overlaps take the brighter value).
    pub fn render(&self, shift: &[[f32; 2]]) -> Vec<f32> {
        let mut c = vec![0.0f32; SIDE * SIDE];
        for (item, s) in self.items.iter().zip(shift) {
            let (dx, dy) = (s[0].round() as isize, s[1].round() as isize);
            for iy in 0..ITEM {
                for ix in 0..ITEM {
                    let x = item.at.0 as isize + ix as isize + dx;
                    let y = item.at.1 as isize + iy as isize + dy;
                    if (0..SIDE as isize).contains(&x) && (0..SIDE as isize).contains(&y) {
                        let p = &mut c[y as usize * SIDE + x as usize];
                        *p = p.max(item.image[iy * ITEM + ix]);
                    }
                }
            }
        }
        c
    }

    /// The still image (no motion).
    pub fn image(&self) -> Vec<f32> {
        self.render(&vec![[0.0; 2]; self.items.len()])
    }

    /// The item under each cell's centre (the last one drawn wins), `[CELLS, CELLS]`.
    pub fn owners(&self) -> Vec<Option<usize>> {
        (0..CELLS * CELLS)
            .map(|c| {
                let (x, y) = ((c % CELLS) * CELL + CELL / 2, (c / CELLS) * CELL + CELL / 2);
                (0..self.items.len())
                    .rev()
                    .find(|&i| self.items[i].covers(x, y))
            })
            .collect()
    }

    /// The dense trajectory of item motions `motions` (one per item): `[FRAMES, 2, CELLS,
    /// CELLS]` in cells.
    pub fn trajectory_of(&self, motions: &[Motion]) -> Vec<f32> {
        let owners = self.owners();
        let mut out = vec![0.0; TRAJECTORY];
        for t in 0..FRAMES {
            for (c, o) in owners.iter().enumerate() {
                if let Some(i) = *o {
                    let d = motions[i].at(t + 1);
                    out[(t * 2) * CELLS * CELLS + c] = d[0] / CELL as f32;
                    out[(t * 2 + 1) * CELLS * CELLS + c] = d[1] / CELL as f32;
                }
            }
        }
        out
    }

    /// The true dense trajectory.
    pub fn trajectory(&self) -> Vec<f32> {
        let m: Vec<Motion> = self.items.iter().map(Item::motion).collect();
        self.trajectory_of(&m)
    }
}

/// 28×28 -> 14×14 by 2×2 means.
fn halve(img: &[f32]) -> Vec<f32> {
    (0..ITEM * ITEM)
        .map(|p| {
            let (x, y) = (2 * (p % ITEM), 2 * (p / ITEM));
            (img[y * 28 + x]
                + img[y * 28 + x + 1]
                + img[(y + 1) * 28 + x]
                + img[(y + 1) * 28 + x + 1])
                / 4.0
        })
        .collect()
}

/// `n` scenes from `split`'s images (scene s uses images drawn by hash), deterministic in
/// (`seed`, split contents).
pub fn scenes(split: &Split, n: usize, seed: u64) -> Vec<Scene> {
    (0..n)
        .map(|s| {
            let h = |k: u64| mix(seed, (s as u64) * 16 + k);
            let count = 1 + (h(0) % 2) as usize;
            let items = (0..count)
                .map(|i| {
                    let idx = (h(1 + i as u64) % split.len() as u64) as usize;
                    let class = split.labels()[idx];
                    let modes = MODES[class as usize].len() as u64;
                    // Two items sit in the left and right halves; one sits anywhere across.
                    let x = match count {
                        1 => 4 + (h(4) % 11) as usize,
                        _ => i * 16 + (h(4 + i as u64) % 3) as usize,
                    };
                    let y = 5 + (h(6 + i as u64) % 9) as usize;
                    Item {
                        image: halve(split.image(idx)),
                        at: (x, y),
                        class,
                        mode: (h(8 + i as u64) % modes) as u8,
                    }
                })
                .collect();
            Scene { items }
        })
        .collect()
}
