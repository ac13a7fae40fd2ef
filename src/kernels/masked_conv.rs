//! Launcher for `shaders/masked_conv.wgsl`: the tap lists of PixelCNN masked convolutions and
//! their im2col / col2im, which read only the allowed taps; the convolution itself is
//! [`super::conv2d::Conv`] with `TapSource::List`. Tests: `kernels-tests/masked_conv.rs`.

use super::conv2d::{Geometry, check_loops};
use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("masked_conv", "masked_conv.wgsl");

/// Invocations per workgroup of the im2col / col2im entry points.
const WG: usize = 64;

/// The most taps a layer may have (they travel in the params uniform): a 11×11 mask B has 61.
pub const MAX_TAPS: usize = 64;

/// PixelCNN's mask types (van den Oord et al. 2016): A excludes the centre tap (the first
/// layer, which must not see the pixel it predicts), B includes it (every later layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    A,
    B,
}

/// The kernel offsets a masked convolution reads, `[dy, dx]` relative to the output pixel
/// (dy < 0 above it, dx < 0 left of it), in the order of the weight's tap axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taps(Vec<[i32; 2]>);

impl Taps {
    /// Any 1 to [`MAX_TAPS`] distinct offsets.
    pub fn new(offsets: Vec<[i32; 2]>) -> Result<Taps> {
        let distinct = offsets
            .iter()
            .enumerate()
            .all(|(i, o)| !offsets[..i].contains(o));
        let small = offsets.iter().flatten().all(|v| v.abs() < 1 << 15);
        if offsets.is_empty() || offsets.len() > MAX_TAPS || !distinct || !small {
            return Err(Error::bad(
                "Taps::new",
                format!(
                    "need 1 to {MAX_TAPS} distinct offsets below 2^15, got {:?}",
                    offsets
                ),
            ));
        }
        Ok(Taps(offsets))
    }

    /// The offsets (dy, dx) with dy in `rows` and |dx| ≤ k/2 that `keep` allows, in raster order.
    fn window(
        k: usize,
        rows: std::ops::RangeInclusive<i32>,
        keep: impl Fn(i32, i32) -> bool,
    ) -> Result<Taps> {
        if k.is_multiple_of(2) || k > 63 {
            return Err(Error::bad(
                "Taps",
                format!("kernel size {k}: masked kernels are odd, at most 63"),
            ));
        }
        let r = (k / 2) as i32;
        let offsets = rows
            .flat_map(|dy| (-r..=r).map(move |dx| [dy, dx]))
            .filter(|&[dy, dx]| keep(dy, dx))
            .collect();
        Taps::new(offsets)
    }

    /// PixelCNN's k×k mask (k odd): the rows above, and the current row left of the centre,
    /// plus the centre for mask B.
    pub fn masked(k: usize, mask: Mask) -> Result<Taps> {
        let r = (k / 2) as i32;
        Taps::window(k, -r..=0, |dy, dx| {
            dy < 0 || dx < 0 || (dx == 0 && mask == Mask::B)
        })
    }

    /// The gated block's vertical stack: the k×k window's rows above and its current row
    /// (⌈k/2⌉ × k taps). It reads the current row right of the centre too, so its output is
    /// causal only after [`Taps::down_shift`].
    pub fn vertical(k: usize) -> Result<Taps> {
        let r = (k / 2) as i32;
        Taps::window(k, -r..=0, |_, _| true)
    }

    /// The gated block's horizontal stack: 1 × k, the taps left of the centre, plus the centre
    /// for mask B.
    pub fn horizontal(k: usize, mask: Mask) -> Result<Taps> {
        Taps::window(k, 0..=0, |_, dx| dx < 0 || (dx == 0 && mask == Mask::B))
    }

    /// The pixel directly above: the vertical stack's down-shift (with a 1×1 map, the link
    /// from the vertical to the horizontal stack).
    pub fn down_shift() -> Taps {
        Taps(vec![[-1, 0]])
    }

    /// The pixel itself: a 1×1 convolution.
    pub fn pointwise() -> Taps {
        Taps(vec![[0, 0]])
    }

    pub fn offsets(&self) -> &[[i32; 2]] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a tap list has at least one tap.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The mask this tap list respects in raster order: `A` when every tap reads before the
    /// output pixel, `B` when at or before it, `None` when some tap reads after it.
    pub fn causality(&self) -> Option<Mask> {
        let before = |&[dy, dx]: &[i32; 2]| dy < 0 || (dy == 0 && dx < 0);
        if self.0.iter().all(before) {
            Some(Mask::A)
        } else if self.0.iter().all(|o| before(o) || *o == [0, 0]) {
            Some(Mask::B)
        } else {
            None
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    h: u32,
    w: u32,
    taps: u32,
    total: u32,
    _pad: [u32; 3],
    offsets: [[i32; 4]; MAX_TAPS / 2],
}

/// The GEMM of a masked convolution: x `[b, c, h, w]` * weight `[cout, t, c]` -> y
/// `[b, cout, h, w]`, a t × 1 kernel over the column matrix `[b·h·w, t·c]`.
pub(crate) fn geometry(
    op: &'static str,
    x: &[usize],
    wt: &[usize],
    taps: &Taps,
) -> Result<Geometry> {
    let (&[b, c, h, w], &[cout, t, cw]) = (x, wt) else {
        return Err(Error::bad(
            op,
            format!("expected x [B, C, H, W] and weight [Cout, taps, C], got {x:?} and {wt:?}"),
        ));
    };
    if cw != c || t != taps.len() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: x.to_vec(),
            rhs: wt.to_vec(),
        });
    }
    // Offsets are u32 in the shader (i32 for pixel coordinates).
    if b * h * w * (t * c).max(cout) >= 1 << 31 || h.max(w) >= 1 << 15 {
        return Err(Error::bad(
            op,
            "tensors of 2^31 elements or more, or images of 2^15 rows or columns, are not supported",
        ));
    }
    Ok(Geometry {
        b,
        c,
        h,
        w,
        cout,
        kh: t,
        kw: 1,
        oh: h,
        ow: w,
    })
}

fn params(g: &Geometry, taps: &Taps) -> Params {
    let mut offsets = [[0; 4]; MAX_TAPS / 2];
    for (i, o) in taps.offsets().iter().enumerate() {
        offsets[i / 2][2 * (i % 2)..2 * (i % 2) + 2].copy_from_slice(o);
    }
    Params {
        c: g.c as u32,
        h: g.h as u32,
        w: g.w as u32,
        taps: taps.len() as u32,
        total: g.pixels() as u32,
        _pad: [0; 3],
        offsets,
    }
}

/// x: `[B, C, H, W]` -> col `[B·H·W, T·C]` (zeros outside the image).
pub(crate) fn im2col(x: &Tensor, g: &Geometry, taps: &Taps) -> Result<Tensor> {
    let k = taps.len() * g.c;
    check_loops(x, "masked_conv im2col", k + taps.len())?;
    let col = Tensor::uninit(x.engine(), &[g.pixels(), k], DType::F32)?;
    let groups = g.pixels().div_ceil(WG) as u32;
    let tensors = [Bind::read("src", x), Bind::write("dst", &col)];
    let p = params(g, taps);
    super::launch(&SHADER, "masked_conv_im2col", &[], &tensors, &p, groups)?;
    Ok(col)
}

/// dcol `[B·H·W, T·C]` -> dx `[B, C, H, W]`: the adjoint of `im2col`.
pub(crate) fn col2im(dcol: &Tensor, g: &Geometry, taps: &Taps) -> Result<Tensor> {
    let k = taps.len() * g.c;
    // The 4 channels of a tap in one vec4 load when C % 4 == 0.
    let (entry, src, steps) = match g.c.is_multiple_of(4) {
        true => ("masked_conv_col2im4", "src4", k / 4),
        false => ("masked_conv_col2im", "src", k),
    };
    check_loops(dcol, "masked_conv col2im", steps + g.c)?;
    let dx = Tensor::uninit(dcol.engine(), &[g.b, g.c, g.h, g.w], DType::F32)?;
    let groups = g.pixels().div_ceil(WG) as u32;
    let tensors = [Bind::read(src, dcol), Bind::write("dst", &dx)];
    super::launch(&SHADER, entry, &[], &tensors, &params(g, taps), groups)?;
    Ok(dx)
}
