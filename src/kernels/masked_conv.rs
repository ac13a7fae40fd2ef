//! Launcher for `shaders/masked_conv.wgsl`: PixelCNN masked convolutions that read only their
//! allowed taps (im2col over a tap list, then conv2d's GEMM). Tests: `kernels-tests/masked_conv.rs`.

use super::conv2d::{self, check_f32, check_loops, forward_from_col, to_rows, weight_grad_from};
use super::matmul::{Matmul, matmul_with};
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

/// One masked convolution's sizes: x [b, c, h, w] * weight [cout, t, c] -> y [b, cout, h, w].
#[derive(Clone, Copy, Debug)]
struct Geometry {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    cout: usize,
    t: usize,
}

impl Geometry {
    fn new(op: &'static str, x: &[usize], wt: &[usize], taps: &Taps) -> Result<Geometry> {
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
        let g = Geometry {
            b,
            c,
            h,
            w,
            cout,
            t,
        };
        // Offsets are u32 in the shader (i32 for pixel coordinates).
        if g.pixels() * g.k().max(cout) >= 1 << 31 || h.max(w) >= 1 << 15 {
            return Err(Error::bad(
                op,
                "tensors of 2^31 elements or more, or images of 2^15 rows or columns, are not supported",
            ));
        }
        Ok(g)
    }

    /// Contraction length of the GEMM: T·C.
    fn k(&self) -> usize {
        self.t * self.c
    }

    fn pixels(&self) -> usize {
        self.b * self.h * self.w
    }

    /// The GEMM as conv2d's helpers see it: K = C·T (a T × 1 kernel), output H × W.
    fn gemm(&self) -> conv2d::Geometry {
        conv2d::Geometry {
            b: self.b,
            c: self.c,
            h: self.h,
            w: self.w,
            cout: self.cout,
            kh: self.t,
            kw: 1,
            oh: self.h,
            ow: self.w,
        }
    }

    fn params(&self, taps: &Taps) -> Params {
        let mut offsets = [[0; 4]; MAX_TAPS / 2];
        for (i, o) in taps.offsets().iter().enumerate() {
            offsets[i / 2][2 * (i % 2)..2 * (i % 2) + 2].copy_from_slice(o);
        }
        Params {
            c: self.c as u32,
            h: self.h as u32,
            w: self.w as u32,
            taps: self.t as u32,
            total: self.pixels() as u32,
            _pad: [0; 3],
            offsets,
        }
    }
}

/// x: [B, C, H, W] -> col [B·H·W, T·C] (zeros outside the image).
fn im2col(x: &Tensor, g: &Geometry, taps: &Taps) -> Result<Tensor> {
    check_loops(x, "masked_conv im2col", g.k() + g.t)?;
    let col = Tensor::uninit(x.engine(), &[g.pixels(), g.k()], DType::F32)?;
    let groups = g.pixels().div_ceil(WG) as u32;
    let params = g.params(taps);
    super::launch(
        &SHADER,
        "masked_conv_im2col",
        &[],
        &[Bind::read("src", x), Bind::write("dst", &col)],
        &params,
        groups,
    )?;
    Ok(col)
}

/// dcol [B·H·W, T·C] -> dx [B, C, H, W]: the adjoint of `im2col`.
fn col2im(dcol: &Tensor, g: &Geometry, taps: &Taps) -> Result<Tensor> {
    // The 4 channels of a tap in one vec4 load when C % 4 == 0.
    let (entry, src, steps) = match g.c.is_multiple_of(4) {
        true => ("masked_conv_col2im4", "src4", g.k() / 4),
        false => ("masked_conv_col2im", "src", g.k()),
    };
    check_loops(dcol, "masked_conv col2im", steps + g.c)?;
    let dx = Tensor::uninit(dcol.engine(), &[g.b, g.c, g.h, g.w], DType::F32)?;
    let groups = g.pixels().div_ceil(WG) as u32;
    let tensors = [Bind::read(src, dcol), Bind::write("dst", &dx)];
    super::launch(&SHADER, entry, &[], &tensors, &g.params(taps), groups)?;
    Ok(dx)
}

/// y[b, o, i, j] = Σ_t Σ_c w[o, t, c]·x[b, c, i + dy_t, j + dx_t] (+ bias[o]), zero outside
/// the image: x [B, C, H, W], w [Cout, T, C], bias [Cout] -> y [B, Cout, H, W]. Only the taps
/// in `taps` are read: a masked kernel without the multiplications by zero.
pub fn masked_conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, taps: &Taps) -> Result<Tensor> {
    Ok(masked_conv_saving(x, w, bias, taps, false)?.0)
}

/// `masked_conv` that also returns the column matrix of x when `keep` (the tape keeps it for
/// the weight gradient instead of gathering it twice).
pub(crate) fn masked_conv_saving(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    taps: &Taps,
    keep: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let g = Geometry::new("masked_conv", x.shape(), w.shape(), taps)?;
    check_f32("masked_conv", &[x, w])?;
    let col = im2col(x, &g, taps)?;
    let y = forward_from_col(&col, w, bias, &g.gemm())?;
    Ok((y, keep.then_some(col)))
}

/// dx from dy in rows: dcol [pixels, T·C] = dy_rows [pixels, Cout] · w [Cout, T·C], then each
/// tap back to its pixel.
fn input_grad_from_rows(rows: &Tensor, w: &Tensor, g: &Geometry, taps: &Taps) -> Result<Tensor> {
    let dcol = matmul_with(rows, &w.reshape(&[g.cout, g.k()])?, &Matmul::default())?;
    col2im(&dcol, g, taps)
}

/// Checks dy against the geometry of x (shape `x_shape`) and w.
fn backward_geometry(
    op: &'static str,
    dy: &Tensor,
    x_shape: &[usize],
    w: &[usize],
    taps: &Taps,
) -> Result<Geometry> {
    let g = Geometry::new(op, x_shape, w, taps)?;
    check_f32(op, &[dy])?;
    dy.expect_shape(op, &[g.b, g.cout, g.h, g.w])?;
    Ok(g)
}

/// dx of [`masked_conv`]: dy [B, Cout, H, W], w [Cout, T, C] -> dx with shape `x_shape`.
pub fn masked_conv_backward_input(
    dy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    taps: &Taps,
) -> Result<Tensor> {
    let op = "masked_conv_backward_input";
    let g = backward_geometry(op, dy, x_shape, w.shape(), taps)?;
    check_f32(op, &[w])?;
    input_grad_from_rows(&to_rows(dy, &g.gemm())?, w, &g, taps)
}

/// dw of [`masked_conv`] into `dw` [Cout, T, C]: overwritten, or added to when `accumulate`
/// (gradient accumulation straight into a parameter's gradient buffer).
pub fn masked_conv_backward_weight_into(
    dy: &Tensor,
    x: &Tensor,
    taps: &Taps,
    dw: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let op = "masked_conv_backward_weight";
    let g = backward_geometry(op, dy, x.shape(), dw.shape(), taps)?;
    check_f32(op, &[x, dw])?;
    let rows = to_rows(dy, &g.gemm())?;
    weight_grad_from(&rows, &im2col(x, &g, taps)?, &g.gemm(), dw, accumulate)
}

/// dw of [`masked_conv`]: dy [B, Cout, H, W], x [B, C, H, W] -> [Cout, T, C].
pub fn masked_conv_backward_weight(dy: &Tensor, x: &Tensor, taps: &Taps) -> Result<Tensor> {
    let (cout, c) = (dy.shape().get(1), x.shape().get(1));
    let (Some(&cout), Some(&c)) = (cout, c) else {
        return Err(Error::bad(
            "masked_conv_backward_weight",
            format!(
                "expected 4-D dy and x, got {:?} and {:?}",
                dy.shape(),
                x.shape()
            ),
        ));
    };
    let dw = Tensor::uninit(x.engine(), &[cout, taps.len(), c], DType::F32)?;
    masked_conv_backward_weight_into(dy, x, taps, &dw, false)?;
    Ok(dw)
}

/// Both gradients from dy and what the forward kept (`col`, the column matrix of x): dy goes
/// to rows once for both; dx only when `want_dx`; dw, when given, written into (or added to,
/// with its flag) the given buffer.
pub(crate) fn masked_conv_backward_saved(
    dy: &Tensor,
    w: &Tensor,
    col: Option<&Tensor>,
    x_shape: &[usize],
    taps: &Taps,
    want_dx: bool,
    dw: Option<(&Tensor, bool)>,
) -> Result<Option<Tensor>> {
    const OP: &str = "masked_conv backward";
    let g = backward_geometry(OP, dy, x_shape, w.shape(), taps)?;
    let rows = to_rows(dy, &g.gemm())?;
    if let Some((dw, accumulate)) = dw {
        let col = col.ok_or_else(|| Error::bad(OP, "the forward did not keep its columns"))?;
        col.expect_shape(OP, &[g.pixels(), g.k()])?;
        weight_grad_from(&rows, col, &g.gemm(), dw, accumulate)?;
    }
    want_dx
        .then(|| input_grad_from_rows(&rows, w, &g, taps))
        .transpose()
}
