//! One convolution plan, [`Conv`], for every convolution of the crate (dense, transposed, tap
//! list): implicit GEMM where the shapes and device allow (`conv2d_igemm`: forward, weight
//! gradient and the sub-pixel adjoint), else im2col (`shaders/conv2d.wgsl`, or
//! `shaders/masked_conv.wgsl` for tap lists) + the matmul forward, col2im + transposed matmuls
//! backward. Tests: `kernels-tests/conv2d.rs`, `conv2d_igemm.rs`, `conv_transpose2d.rs`,
//! `masked_conv.rs`; bench: `bench -- kernels --only conv`.

use super::conv_transpose2d::{self, ConvTranspose2dParams};
use super::conv2d_igemm::{self, WeightPlan};
use super::layout::permute;
use super::masked_conv::{self, Taps};
use super::matmul::{Matmul, matmul_into, matmul_with};
use super::reduce::{Reduce, reduce_first, reduce_last};
use crate::engine::{Bind, DType, Engine, Error, Result, Shader, Tensor, shader};

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

/// The GEMM of a convolution: x `[b, c, h, w]` * weight `[cout, c, kh, kw]` -> y `[b, cout, oh, ow]`
/// (a tap list of T taps is a T × 1 kernel).
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

    fn x_shape(&self) -> [usize; 4] {
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

/// Where a convolution's taps come from, and the weight layout that goes with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TapSource {
    /// PyTorch's `Conv2d`: every tap of a kh × kw kernel; weight `[Cout, Cin, kh, kw]`.
    Dense(Conv2dParams),
    /// PyTorch's `ConvTranspose2d`, the adjoint of a dense convolution; weight
    /// `[Cin, Cout, kh, kw]`.
    Transposed(ConvTranspose2dParams),
    /// A masked convolution reading only its taps (see [`Taps`]); weight `[Cout, T, Cin]`,
    /// output the size of the input.
    List(Taps),
}

/// One convolution: a tap source checked against the shapes of x and the weight. `forward`
/// computes y (and keeps what the weight gradient needs), `backward` dx and dw from dy.
#[derive(Clone, Debug)]
pub struct Conv {
    source: TapSource,
    /// The dense or tap-list convolution that runs forward (transposed: backward).
    g: Geometry,
    x_shape: [usize; 4],
    w_shape: Vec<usize>,
}

/// What [`Conv::forward`] keeps for the weight gradient: the column matrix of x (dense, tap
/// list) or x channels-last (transposed), so that the backward pass does not gather it again;
/// or x itself when the forward ran as implicit GEMM and gathered no columns.
#[derive(Clone, Debug)]
pub struct Saved(Tensor);

/// The weight gradient a [`Conv::backward`] writes: into `into` (the weight's shape),
/// overwritten or, with `accumulate`, added to (a parameter's gradient buffer).
#[derive(Clone, Copy, Debug)]
pub struct WeightGrad<'a> {
    pub saved: &'a Saved,
    pub into: &'a Tensor,
    pub accumulate: bool,
}

impl Conv {
    /// Checks `source` against x `[B, Cin, H, W]` and the weight shape (see [`TapSource`]).
    pub fn new(source: TapSource, x_shape: &[usize], w_shape: &[usize]) -> Result<Conv> {
        const OP: &str = "conv";
        let &[b, c, h, w] = x_shape else {
            let why = format!("expected x [B, C, H, W], got {x_shape:?}");
            return Err(Error::bad(OP, why));
        };
        let g = match &source {
            TapSource::Dense(p) => Geometry::new(OP, x_shape, w_shape, p)?,
            TapSource::Transposed(p) => {
                // The dense convolution it transposes maps y back to x.
                let y = conv_transpose2d::output_shape(OP, x_shape, w_shape, p)?;
                Geometry::new(OP, &y, w_shape, &p.conv())?
            }
            TapSource::List(taps) => masked_conv::geometry(OP, x_shape, w_shape, taps)?,
        };
        Ok(Conv {
            source,
            g,
            x_shape: [b, c, h, w],
            w_shape: w_shape.to_vec(),
        })
    }

    pub fn source(&self) -> &TapSource {
        &self.source
    }

    /// y `[B, Cout, H', W']`.
    pub fn y_shape(&self) -> [usize; 4] {
        match self.source {
            TapSource::Transposed(_) => self.g.x_shape(),
            _ => self.g.y_shape(),
        }
    }

    /// y = conv(x, w) + bias (`[Cout]`); with `keep`, also what [`Conv::backward`] needs for
    /// the weight gradient.
    pub fn forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        keep: bool,
    ) -> Result<(Tensor, Option<Saved>)> {
        const OP: &str = "conv forward";
        expect_f32(OP, w, &self.w_shape)?;
        if let Some(b) = bias {
            expect_f32(OP, b, &[self.y_shape()[1]])?;
        }
        if let (TapSource::Dense(_), Some(p)) = (&self.source, self.implicit(x)) {
            expect_f32(OP, x, &self.x_shape)?;
            let y = conv2d_igemm::forward_with(x, w, bias, &self.g, &p)?;
            return Ok((y, keep.then(|| Saved(x.clone()))));
        }
        let saved = self.keep(x)?;
        let y = match (&self.source, saved.0.shape().len()) {
            // The split plan keeps x channels-first; the forward still reads its rows.
            (TapSource::Transposed(_), 4) => self.image(&self.rows(x)?, w, bias)?,
            (TapSource::Transposed(_), _) => self.image(&saved.0, w, bias)?,
            _ => self.output_of_columns(&saved.0, w, bias)?,
        };
        Ok((y, keep.then_some(saved)))
    }

    /// The dense convolution of the GEMM's x when the implicit GEMM can run it on `img`.
    fn implicit(&self, img: &Tensor) -> Option<Conv2dParams> {
        let p = match &self.source {
            TapSource::Dense(p) => *p,
            TapSource::Transposed(p) => p.conv(),
            TapSource::List(_) => return None,
        };
        conv2d_igemm::usable(img, &self.g, &p).then_some(p)
    }

    /// How the weight gradient runs (with the dense convolution's parameters): the taps come
    /// from x (dense) or dy (transposed; the GEMM's x, of `g.x_shape()`).
    fn weight_plan(&self, engine: &Engine) -> (WeightPlan, Conv2dParams) {
        let (p, numel) = match &self.source {
            TapSource::Dense(p) => (*p, self.x_shape.iter().product()),
            TapSource::Transposed(p) => (p.conv(), self.g.x_shape().iter().product()),
            TapSource::List(_) => return (WeightPlan::Matmul, Conv2dParams::default()),
        };
        (conv2d_igemm::weight_plan(engine, numel, &self.g, &p), p)
    }

    /// What [`Conv::forward`] keeps, from x alone (a weight gradient without a forward): x
    /// itself where an implicit weight gradient will gather its taps (dense) or read it
    /// channels-first (transposed, split plan).
    pub fn keep(&self, x: &Tensor) -> Result<Saved> {
        expect_f32("conv keep", x, &self.x_shape)?;
        let plan = self.weight_plan(x.engine()).0;
        Ok(Saved(match self.source {
            TapSource::Transposed(_) if plan == WeightPlan::Split => x.clone(),
            TapSource::Transposed(_) => self.rows(x)?,
            TapSource::Dense(_) if plan != WeightPlan::Matmul => x.clone(),
            _ => self.columns(x)?,
        }))
    }

    /// From dy `[B, Cout, H', W']`: dx (returned) when given the weight `w_for_dx`, and the
    /// weight gradient when `dw` asks for it. dy is permuted (dense, list) or gathered
    /// (transposed) once for both.
    pub fn backward(
        &self,
        dy: &Tensor,
        w_for_dx: Option<&Tensor>,
        dw: Option<WeightGrad>,
    ) -> Result<Option<Tensor>> {
        const OP: &str = "conv backward";
        expect_f32(OP, dy, &self.y_shape())?;
        if let Some(w) = w_for_dx {
            expect_f32(OP, w, &self.w_shape)?;
        }
        if let Some(dw) = dw {
            expect_f32(OP, dw.into, &self.w_shape)?;
        }
        let transposed = matches!(self.source, TapSource::Transposed(_));
        // The image whose taps form the GEMM's columns, and the one that meets them in rows:
        // dense and lists: x's taps, dy's rows; transposed: dy's taps, x's rows. Each is
        // gathered at most once, and not at all where the implicit GEMM reads the image.
        let mut col = None;
        let mut rows = None;
        if let Some(dw) = dw {
            let saved = &dw.saved.0;
            let into = dw.into.reshape(&[self.g.cout, self.g.k()])?;
            // Dense sources keep x itself where an implicit GEMM ran or can run; transposed
            // ones keep x channels-first for the split plan, else channels-last.
            let taps_of = match transposed {
                true => Some(dy),
                false => (saved.shape() == self.x_shape).then_some(saved),
            };
            let (plan, p) = self.weight_plan(dy.engine());
            let channels_first = match transposed {
                true => (saved.shape() == self.g.y_shape()).then_some(saved),
                false => Some(dy),
            };
            if let (WeightPlan::Split, Some(img), Some(other)) = (plan, taps_of, channels_first) {
                conv2d_igemm::weight_grad_split(img, other, &into, dw.accumulate, &self.g, &p)?;
                return match w_for_dx {
                    Some(w) => self.input_grad(dy, w, None, None).map(Some),
                    None => Ok(None),
                };
            }
            if !transposed {
                rows = Some(self.rows(dy)?);
            }
            let dy_rows = match transposed {
                true => saved,
                false => rows.as_ref().expect("rows of dy"),
            };
            dy_rows.expect_shape(OP, &[self.g.pixels(), self.g.cout])?;
            if let (WeightPlan::Rows, Some(img)) = (plan, taps_of) {
                // dw [Cout, K] (+)= rowsᵀ · col, the columns gathered inside the product.
                conv2d_igemm::weight_grad_with(img, dy_rows, &into, dw.accumulate, &self.g, &p)?;
            } else {
                let c = match (transposed, taps_of) {
                    (true, _) => self.columns(dy)?,
                    (false, Some(x)) => self.columns(x)?,
                    (false, None) => saved.clone(),
                };
                c.expect_shape(OP, &[self.g.pixels(), self.g.k()])?;
                let opts = Matmul {
                    trans_a: true,
                    accumulate: dw.accumulate,
                    ..Default::default()
                };
                // dw [Cout, K] (+)= rowsᵀ [Cout, pixels] · col [pixels, K].
                matmul_into(dy_rows, &c, &opts, &into)?;
                col = transposed.then_some(c);
            }
        }
        match w_for_dx {
            Some(w) => self.input_grad(dy, w, col, rows).map(Some),
            None => Ok(None),
        }
    }

    /// dx from dy, reusing dy's columns (transposed) or rows (dense) where the weight gradient
    /// gathered them.
    fn input_grad(
        &self,
        dy: &Tensor,
        w: &Tensor,
        col: Option<Tensor>,
        rows: Option<Tensor>,
    ) -> Result<Tensor> {
        let transposed = matches!(self.source, TapSource::Transposed(_));
        let dx = match (transposed, col) {
            (true, Some(col)) => self.output_of_columns(&col, w, None)?,
            // dx: the dense convolution of dy, gathered inside the product when it can run.
            (true, None) => match self.implicit(dy) {
                Some(p) => conv2d_igemm::forward_with(dy, w, None, &self.g, &p)?,
                None => self.output_of_columns(&self.columns(dy)?, w, None)?,
            },
            (false, _) => {
                let rows = match rows {
                    Some(r) => r,
                    None => self.rows(dy)?,
                };
                self.image(&rows, w, None)?
            }
        };
        Ok(dx)
    }

    /// The column matrix `[pixels, K]` of an image shaped like the GEMM's x.
    fn columns(&self, img: &Tensor) -> Result<Tensor> {
        match &self.source {
            TapSource::Dense(p) => im2col(img, &self.g, p),
            TapSource::Transposed(p) => im2col(img, &self.g, &p.conv()),
            TapSource::List(taps) => masked_conv::im2col(img, &self.g, taps),
        }
    }

    /// An image shaped like the GEMM's y, channels last: `[pixels, Cout]`.
    fn rows(&self, img: &Tensor) -> Result<Tensor> {
        let g = &self.g;
        permute(img, [g.b, g.cout, g.oh * g.ow], true)
    }

    /// y `[B, Cout, H', W']` from the column matrix: `[pixels, K] · [Cout, K]ᵀ` gives y
    /// channels-last (the matmul adds the bias), then one permute.
    fn output_of_columns(&self, col: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let g = &self.g;
        let opts = Matmul {
            trans_b: true,
            bias,
            ..Default::default()
        };
        let rows = matmul_with(col, &w.reshape(&[g.cout, g.k()])?, &opts)?;
        permute(&rows, [g.b, g.cout, g.oh * g.ow], false)?.reshape(&g.y_shape())
    }

    /// The GEMM's x from rows `[pixels, Cout]`: dcol = rows · w, then each tap back to its pixel
    /// (+ bias per channel, which the transposed forward uses). Dense taps with C % 4 == 0
    /// first permute w to `[Cout, kh, kw, C]` so that col2im reads 4 channels of a tap at once
    /// (the weight is small; the column matrix is not).
    fn image(&self, rows: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let g = &self.g;
        let dense = match &self.source {
            TapSource::Dense(p) => *p,
            TapSource::Transposed(p) => p.conv(),
            TapSource::List(taps) => {
                // Tap lists run forward through `output_of_columns`: no bias reaches col2im.
                debug_assert!(bias.is_none());
                let w_k = w.reshape(&[g.cout, g.k()])?;
                let dcol = matmul_with(rows, &w_k, &Matmul::default())?;
                return masked_conv::col2im(&dcol, g, taps);
            }
        };
        if conv2d_igemm::usable_transposed(rows, g, &dense) {
            return conv2d_igemm::transposed(rows, w, bias, g, &dense);
        }
        let w_k = match channels_last_taps(g) {
            true => permute(w, [g.cout, g.c, g.kh * g.kw], true)?,
            false => w.clone(),
        };
        let dcol = matmul_with(rows, &w_k.reshape(&[g.cout, g.k()])?, &Matmul::default())?;
        col2im(&dcol, g, &dense, bias)
    }
}

/// Errors unless `t` is f32 of `shape`.
fn expect_f32(op: &'static str, t: &Tensor, shape: &[usize]) -> Result<()> {
    t.expect_dtype(op, DType::F32)?;
    t.expect_shape(op, shape)
}

/// db = Σ dy over batch and pixels: dy `[B, C, H, W]` -> `[C]`, for every tap source.
pub fn bias_grad(dy: &Tensor) -> Result<Tensor> {
    let s = dy.shape();
    if s.len() != 4 {
        return Err(Error::bad(
            "conv bias_grad",
            format!("expected a 4-D dy, got {s:?}"),
        ));
    }
    let per_image = reduce_last(Reduce::Sum, &dy.reshape(&[s[0], s[1], s[2] * s[3]])?)?;
    reduce_first(Reduce::Sum, &per_image)
}

/// x: `[B, C, H, W]` -> col `[B·H'·W', C·kh·kw]` (zeros in the padding).
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

/// dcol `[B·H'·W', C·kh·kw]` -> dx `[B, C, H, W]` (+ `bias[c]`): the adjoint of `im2col`; taps in
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
