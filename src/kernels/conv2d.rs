//! Launcher for `shaders/conv2d.wgsl`: 2-D convolution (NCHW, PyTorch weights) as im2col + the
//! matmul, and its gradients through col2im and transposed matmuls. Tests: `kernels-tests/conv2d.rs`.

use super::matmul::{Matmul, matmul_into, matmul_with};
use super::reduce::{Reduce, reduce_first, reduce_last};
use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

/// Without and with a bias added by col2im (`shaders/bias/{no_bias,bias}.wgsl` in front).
pub const SHADERS: [Shader; 2] = [
    shader!("conv2d", "bias/no_bias.wgsl", "conv2d.wgsl"),
    shader!("conv2d_bias", "bias/bias.wgsl", "conv2d.wgsl"),
];

/// Invocations per workgroup of the im2col / col2im entry points.
const WG: usize = 64;

/// Stride, padding and dilation per axis (height, width), as in PyTorch's `Conv2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Default for Conv2dParams {
    /// Stride 1, no padding, no dilation.
    fn default() -> Self {
        Conv2dParams::square(1, 0, 1)
    }
}

impl Conv2dParams {
    /// The same stride, padding and dilation on both axes.
    pub fn square(stride: usize, padding: usize, dilation: usize) -> Self {
        Conv2dParams {
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [dilation; 2],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    total: u32,
    step_h: u32,
    step_w: u32,
}

/// One convolution's sizes: x [b, c, h, w] * weight [cout, c, kh, kw] -> y [b, cout, oh, ow].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    /// Checks the shapes and computes the output size, H' = (H + 2p − d(k−1) − 1)/s + 1.
    pub(crate) fn new(
        op: &'static str,
        x: &[usize],
        wt: &[usize],
        p: &Conv2dParams,
    ) -> Result<Self> {
        for s in [x, wt] {
            if s.len() != 4 {
                return Err(Error::bad(op, format!("expected 4-D shapes, got {s:?}")));
            }
        }
        if x[1] != wt[1] {
            return Err(Error::ShapeMismatch {
                op,
                lhs: x.to_vec(),
                rhs: wt.to_vec(),
            });
        }
        let mut out = [0; 2];
        for a in 0..2 {
            let (s, d) = (p.stride[a], p.dilation[a]);
            if s == 0 || d == 0 {
                return Err(Error::bad(
                    op,
                    format!("stride and dilation must be ≥ 1: {p:?}"),
                ));
            }
            let span = d * (wt[2 + a] - 1) + 1;
            let padded = x[2 + a] + 2 * p.padding[a];
            if padded < span {
                let why = format!(
                    "the padded image ({padded} along axis {}) is smaller than the dilated kernel ({span}), so the output would be empty",
                    2 + a
                );
                return Err(Error::bad(op, why));
            }
            out[a] = (padded - span) / s + 1;
        }
        let g = Geometry {
            b: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            cout: wt[0],
            kh: wt[2],
            kw: wt[3],
            oh: out[0],
            ow: out[1],
        };
        // Offsets are i32 in the shader; exact_div divides coordinates exactly in f32.
        let largest = [
            g.pixels() * g.k(),
            g.b * g.c * g.h * g.w,
            g.pixels() * g.cout,
        ];
        if largest.iter().any(|&n| n >= 1 << 31)
            || g.h.max(g.w) + 2 * p.padding.iter().max().unwrap() >= 1 << 24
        {
            return Err(Error::bad(
                op,
                "tensors of 2^31 elements or more, or images of 2^24 rows or columns, are not supported",
            ));
        }
        Ok(g)
    }

    /// Contraction length of the GEMM: taps per output value, C·kh·kw.
    pub(crate) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels over the batch, B·H'·W' (rows of the GEMM).
    pub(crate) fn pixels(&self) -> usize {
        self.b * self.oh * self.ow
    }

    pub(crate) fn x_shape(&self) -> [usize; 4] {
        [self.b, self.c, self.h, self.w]
    }

    pub(crate) fn y_shape(&self) -> [usize; 4] {
        [self.b, self.cout, self.oh, self.ow]
    }

    fn params(&self, p: &Conv2dParams, total: usize) -> Params {
        let u = |v: usize| v as u32;
        Params {
            c: u(self.c),
            h: u(self.h),
            w: u(self.w),
            oh: u(self.oh),
            ow: u(self.ow),
            kh: u(self.kh),
            kw: u(self.kw),
            sh: u(p.stride[0]),
            sw: u(p.stride[1]),
            ph: u(p.padding[0]),
            pw: u(p.padding[1]),
            dh: u(p.dilation[0]),
            dw: u(p.dilation[1]),
            total: u(total),
            step_h: u(lattice_step(p.stride[0], p.dilation[0])),
            step_w: u(lattice_step(p.stride[1], p.dilation[1])),
        }
    }
}

/// The period of the taps whose output coordinate is whole: s / gcd(s, d).
fn lattice_step(s: usize, d: usize) -> usize {
    let (mut a, mut b) = (s, d);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    s / a
}

/// lavapipe stops each invocation after 65,535 loop iterations: refuse instead of being wrong.
pub(crate) fn check_loops(x: &Tensor, op: &'static str, steps: usize) -> Result<()> {
    match x.engine().max_loop_iterations() {
        Some(limit) if steps + 64 > limit as usize => Err(Error::bad(
            op,
            format!("{steps} loop steps per invocation; this driver allows {limit}"),
        )),
        _ => Ok(()),
    }
}

/// x: [B, C, H, W] -> col [B·H'·W', C·kh·kw] (zeros in the padding).
fn im2col(x: &Tensor, g: &Geometry, p: &Conv2dParams) -> Result<Tensor> {
    check_loops(x, "conv2d im2col", g.k() + g.c)?;
    if g.kh == 1 && g.kw == 1 && *p == Conv2dParams::default() {
        // A 1×1 convolution's columns are the pixels' channel rows.
        return permute(x, [g.b, g.c, g.h * g.w], true);
    }
    let col = Tensor::uninit(x.engine(), &[g.pixels(), g.k()], DType::F32)?;
    let total = g.pixels();
    let (entry, src, dst) =
        if g.kw.is_multiple_of(4) && p.dilation[1] == 1 && x.numel().is_multiple_of(4) {
            ("conv2d_im2col_rows", "src4", "dst4")
        } else if g.k().is_multiple_of(4) {
            ("conv2d_im2col4", "src", "dst4")
        } else {
            ("conv2d_im2col", "src", "dst")
        };
    let groups = total.div_ceil(WG) as u32;
    let tensors = [Bind::read(src, x), Bind::write(dst, &col)];
    super::launch(
        &SHADERS[0],
        entry,
        &[],
        &tensors,
        &g.params(p, total),
        groups,
    )?;
    Ok(col)
}

/// Whether dcol is gathered 4 channels at a time: its taps are then in (i, j, c) order.
fn channels_last_taps(g: &Geometry) -> bool {
    g.c.is_multiple_of(4)
}

/// dcol [B·H'·W', C·kh·kw] -> dx [B, C, H, W] (+ bias[c]): the adjoint of `im2col`; taps in
/// (c, i, j) order, or (i, j, c) when `channels_last_taps`.
fn col2im(dcol: &Tensor, g: &Geometry, p: &Conv2dParams, bias: Option<&Tensor>) -> Result<Tensor> {
    let per_pixel = g.kh * g.kw + g.kh + p.stride[0] + p.stride[1];
    check_loops(dcol, "conv2d col2im", g.w * per_pixel)?;
    let dx = Tensor::uninit(dcol.engine(), &g.x_shape(), DType::F32)?;
    let (entry, src, total) = match channels_last_taps(g) {
        true => ("conv2d_col2im4", "src4", g.b * g.c / 4 * g.h),
        false => ("conv2d_col2im", "src", g.b * g.c * g.h),
    };
    let mut tensors = vec![Bind::read(src, dcol), Bind::write("dst", &dx)];
    tensors.extend(bias.map(|b| Bind::read("bias", b)));
    let groups = total.div_ceil(WG) as u32;
    super::launch(
        &SHADERS[bias.is_some() as usize],
        entry,
        &[],
        &tensors,
        &g.params(p, total),
        groups,
    )?;
    Ok(dx)
}

/// Channels-first [B, C, P] <-> channels-last [B·P, C] (`to_rows` picks the direction).
fn permute(t: &Tensor, [b, c, pixels]: [usize; 3], to_rows: bool) -> Result<Tensor> {
    let shape = match to_rows {
        true => vec![b * pixels, c],
        false => vec![b, c, pixels],
    };
    let out = Tensor::uninit(t.engine(), &shape, DType::F32)?;
    let (entry, src, dst) = match (to_rows, c.is_multiple_of(4)) {
        (true, false) => ("conv2d_to_rows", "src", "dst"),
        (true, true) => ("conv2d_to_rows4", "src", "dst4"),
        (false, false) => ("conv2d_to_nchw", "src", "dst"),
        (false, true) => ("conv2d_to_nchw4", "src4", "dst"),
    };
    let params = Params {
        c: c as u32,
        h: pixels as u32,
        total: (b * pixels) as u32,
        ..Params::default()
    };
    let groups = (b * pixels).div_ceil(WG) as u32;
    let tensors = [Bind::read(src, t), Bind::write(dst, &out)];
    super::launch(&SHADERS[0], entry, &[], &tensors, &params, groups)?;
    Ok(out)
}

/// x [B, C, H, W] -> [B·H·W, C]: channels last, one row per pixel (the layout of the GEMMs
/// here, and of vectors to quantise or classify per pixel).
pub fn to_channels_last(x: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    if s.len() != 4 {
        let why = format!("expected [B, C, H, W], got {s:?}");
        return Err(Error::bad("to_channels_last", why));
    }
    x.expect_dtype("to_channels_last", DType::F32)?;
    permute(x, [s[0], s[1], s[2] * s[3]], true)
}

/// rows [B·H·W, C] -> [B, C, H, W] (`shape`): the inverse of [`to_channels_last`].
pub fn to_channels_first(rows: &Tensor, shape: [usize; 4]) -> Result<Tensor> {
    let [b, c, h, w] = shape;
    rows.expect_dtype("to_channels_first", DType::F32)?;
    rows.expect_shape("to_channels_first", &[b * h * w, c])?;
    permute(rows, [b, c, h * w], false)?.reshape(&shape)
}

/// dy [B, Cout, H', W'] -> [B·H'·W', Cout]: channels last, the GEMM's row layout.
pub(crate) fn to_rows(y: &Tensor, g: &Geometry) -> Result<Tensor> {
    permute(y, [g.b, g.cout, g.oh * g.ow], true)
}

pub(crate) fn check_f32(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    ts.iter().try_for_each(|t| t.expect_dtype(op, DType::F32))
}

/// y = conv2d(x, w) + bias: x [B, Cin, H, W], w [Cout, Cin, kh, kw], bias [Cout] -> y [B, Cout, H', W'].
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    Ok(conv2d_saving(x, w, bias, p, false)?.0)
}

/// `conv2d` that also returns im2col(x) when `keep`: its weight gradient needs it again (the
/// tape keeps it instead of gathering the column matrix twice).
pub(crate) fn conv2d_saving(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    keep: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let g = Geometry::new("conv2d", x.shape(), w.shape(), p)?;
    check_f32("conv2d", &[x, w])?;
    let col = im2col(x, &g, p)?;
    let y = forward_from_col(&col, w, bias, &g)?;
    Ok((y, keep.then_some(col)))
}

/// y [B, Cout, H', W'] from the column matrix: [pixels, K] · [Cout, K]ᵀ gives y channels-last
/// (the matmul checks the bias length), then one permute to NCHW.
pub(crate) fn forward_from_col(
    col: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &Geometry,
) -> Result<Tensor> {
    let opts = Matmul {
        trans_b: true,
        bias,
        ..Default::default()
    };
    let rows = matmul_with(col, &w.reshape(&[g.cout, g.k()])?, &opts)?;
    permute(&rows, [g.b, g.cout, g.oh * g.ow], false)?.reshape(&g.y_shape())
}

/// The adjoint of `conv2d` in x (+ bias[c] per output channel, which conv-transpose uses).
pub(crate) fn backward_input(
    op: &'static str,
    dy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: &Conv2dParams,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    Ok(backward_input_saving(op, dy, w, x_shape, p, bias, false)?.0)
}

/// `backward_input` that also returns dy in rows [B·H'·W', Cout] when `keep` (conv-transpose's
/// forward keeps it for its weight gradient).
pub(crate) fn backward_input_saving(
    op: &'static str,
    dy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: &Conv2dParams,
    bias: Option<&Tensor>,
    keep: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let g = Geometry::new(op, x_shape, w.shape(), p)?;
    check_f32(op, &[dy, w])?;
    dy.expect_shape(op, &g.y_shape())?;
    if let Some(b) = bias {
        b.expect_dtype(op, DType::F32)?;
        b.expect_shape(op, &[g.c])?;
    }
    let rows = to_rows(dy, &g)?;
    let dx = input_grad_from_rows(&rows, w, &g, p, bias)?;
    Ok((dx, keep.then_some(rows)))
}

/// dx from dy in rows: dcol [pixels, K] = dy_rows [pixels, Cout] · w [Cout, K], then each tap
/// back to its pixel. With C % 4 == 0, w is first permuted to [Cout, kh, kw, C] so that col2im
/// reads 4 channels of a tap at once (the weight is small; the column matrix is not).
fn input_grad_from_rows(
    rows: &Tensor,
    w: &Tensor,
    g: &Geometry,
    p: &Conv2dParams,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let w_k = match channels_last_taps(g) {
        true => permute(w, [g.cout, g.c, g.kh * g.kw], true)?,
        false => w.clone(),
    };
    let dcol = matmul_with(rows, &w_k.reshape(&[g.cout, g.k()])?, &Matmul::default())?;
    col2im(&dcol, g, p, bias)
}

/// dx of `conv2d`: dy [B, Cout, H', W'], w [Cout, Cin, kh, kw] -> dx with shape `x_shape`.
pub fn conv2d_backward_input(
    dy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
    p: &Conv2dParams,
) -> Result<Tensor> {
    backward_input("conv2d_backward_input", dy, w, x_shape, p, None)
}

/// The gradient in w, named `op` in errors.
pub(crate) fn backward_weight(
    op: &'static str,
    dy: &Tensor,
    x: &Tensor,
    w_shape: &[usize],
    p: &Conv2dParams,
    accumulate_into: Option<&Tensor>,
) -> Result<Tensor> {
    let dw = match accumulate_into {
        Some(t) => {
            t.expect_dtype(op, DType::F32)?;
            t.expect_shape(op, w_shape)?;
            t.clone()
        }
        None => Tensor::uninit(x.engine(), w_shape, DType::F32)?,
    };
    backward_weight_into(op, dy, x, p, &dw, accumulate_into.is_some())?;
    Ok(dw)
}

/// dw written into (or, with `accumulate`, added to) `dw`, whose shape is the weight's.
pub(crate) fn backward_weight_into(
    op: &'static str,
    dy: &Tensor,
    x: &Tensor,
    p: &Conv2dParams,
    dw: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let g = Geometry::new(op, x.shape(), dw.shape(), p)?;
    check_f32(op, &[dy, x, dw])?;
    dy.expect_shape(op, &g.y_shape())?;
    weight_grad_from(&to_rows(dy, &g)?, &im2col(x, &g, p)?, &g, dw, accumulate)
}

/// dw [Cout, K] (+)= dy_rowsᵀ [Cout, pixels] · col [pixels, K].
pub(crate) fn weight_grad_from(
    rows: &Tensor,
    col: &Tensor,
    g: &Geometry,
    dw: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let opts = Matmul {
        trans_a: true,
        accumulate,
        ..Default::default()
    };
    matmul_into(rows, col, &opts, &dw.reshape(&[g.cout, g.k()])?)
}

/// Both gradients of a convolution from dy and what its forward kept: the column matrix of x
/// (`conv2d_saving`). dy goes to rows once for both; dx is computed only when `want_dx`, and
/// dw, when given, is written into (or added to, with its flag) the given buffer.
pub(crate) fn conv2d_backward_saved(
    dy: &Tensor,
    w: &Tensor,
    col: Option<&Tensor>,
    x_shape: &[usize],
    p: &Conv2dParams,
    want_dx: bool,
    dw: Option<(&Tensor, bool)>,
) -> Result<Option<Tensor>> {
    const OP: &str = "conv2d backward";
    let g = Geometry::new(OP, x_shape, w.shape(), p)?;
    dy.expect_shape(OP, &g.y_shape())?;
    let rows = to_rows(dy, &g)?;
    if let Some((dw, accumulate)) = dw {
        let col = col.ok_or_else(|| Error::bad(OP, "the forward did not keep its columns"))?;
        col.expect_shape(OP, &[g.pixels(), g.k()])?;
        weight_grad_from(&rows, col, &g, dw, accumulate)?;
    }
    want_dx
        .then(|| input_grad_from_rows(&rows, w, &g, p, None))
        .transpose()
}

/// Both gradients of a transposed convolution (conv2d's input gradient, so the roles swap):
/// dy is gathered into columns once, giving dx = conv2d(dy, w) and dw = x_rowsᵀ · col(dy),
/// x_rows being what its forward kept (`backward_input_saving`).
pub(crate) fn conv_transpose2d_backward_saved(
    dy: &Tensor,
    w: &Tensor,
    x_rows: Option<&Tensor>,
    p: &Conv2dParams,
    want_dx: bool,
    dw: Option<(&Tensor, bool)>,
) -> Result<Option<Tensor>> {
    const OP: &str = "conv_transpose2d backward";
    let g = Geometry::new(OP, dy.shape(), w.shape(), p)?;
    let col = im2col(dy, &g, p)?;
    if let Some((dw, accumulate)) = dw {
        let rows = x_rows.ok_or_else(|| Error::bad(OP, "the forward did not keep its input"))?;
        rows.expect_shape(OP, &[g.pixels(), g.cout])?;
        weight_grad_from(rows, &col, &g, dw, accumulate)?;
    }
    want_dx
        .then(|| forward_from_col(&col, w, None, &g))
        .transpose()
}

/// [`conv2d_backward_weight`] into `dw` (shape [Cout, Cin, kh, kw]): overwritten, or added to
/// when `accumulate` (gradient accumulation straight into a parameter's gradient buffer).
pub fn conv2d_backward_weight_into(
    dy: &Tensor,
    x: &Tensor,
    p: &Conv2dParams,
    dw: &Tensor,
    accumulate: bool,
) -> Result<()> {
    backward_weight_into("conv2d_backward_weight", dy, x, p, dw, accumulate)
}

/// dw of `conv2d`: dy [B, Cout, H', W'], x [B, Cin, H, W] -> dw `w_shape` = [Cout, Cin, kh, kw];
/// added to `accumulate_into` (which is returned) when given.
pub fn conv2d_backward_weight(
    dy: &Tensor,
    x: &Tensor,
    w_shape: &[usize],
    p: &Conv2dParams,
    accumulate_into: Option<&Tensor>,
) -> Result<Tensor> {
    backward_weight("conv2d_backward_weight", dy, x, w_shape, p, accumulate_into)
}

/// db = Σ dy over batch and pixels: dy [B, C, H, W] -> [C] (conv2d and conv-transpose alike).
pub fn conv2d_backward_bias(dy: &Tensor) -> Result<Tensor> {
    let s = dy.shape();
    if s.len() != 4 {
        return Err(Error::bad(
            "conv2d_backward_bias",
            format!("expected a 4-D dy, got {s:?}"),
        ));
    }
    let per_image = reduce_last(Reduce::Sum, &dy.reshape(&[s[0], s[1], s[2] * s[3]])?)?;
    reduce_first(Reduce::Sum, &per_image)
}
