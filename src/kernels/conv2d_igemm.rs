//! Launcher for `shaders/conv2d_igemm.wgsl`: a dense convolution, its weight gradient and its
//! adjoint (input gradient / transposed convolution, by sub-pixel phases) as implicit GEMM (taps
//! gathered inside the product, no column matrix, no col2im), which
//! [`Conv`](super::conv2d::Conv) picks when they can run. Tests: `kernels-tests/conv2d_igemm.rs`;
//! bench: `bench -- kernels --only conv`.

use super::conv2d::{Conv2dParams, Geometry, check_loops};
use super::layout::permute;
use super::matmul_wide;
use super::reduce::{Reduce, reduce_first_into};
use crate::engine::{Bind, DType, Engine, Error, Result, Shader, Tensor, shader};

/// Without and with a bias per output channel.
pub const SHADERS: [Shader; 2] = [
    shader!("conv2d_igemm", "bias/no_bias.wgsl", "conv2d_igemm.wgsl"),
    shader!("conv2d_igemm_bias", "bias/bias.wgsl", "conv2d_igemm.wgsl"),
];

const OP: &str = "conv2d igemm";

/// Weight-gradient tile: taps × output channels.
const DW_TILE: (usize, usize) = (16, 64);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
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
    cout: u32,
    m: u32,
    tiles_n: u32,
    tiles: u32,
    accumulate: u32,
    split: u32,
    _pad: [u32; 2],
}

impl Params {
    fn new(g: &Geometry, p: &Conv2dParams, tiles_n: usize, tiles: usize, acc: bool) -> Params {
        let u = |v: usize| v as u32;
        Params {
            c: u(g.c),
            h: u(g.h),
            w: u(g.w),
            oh: u(g.oh),
            ow: u(g.ow),
            kh: u(g.kh),
            kw: u(g.kw),
            sh: u(p.stride[0]),
            sw: u(p.stride[1]),
            ph: u(p.padding[0]),
            pw: u(p.padding[1]),
            dh: u(p.dilation[0]),
            cout: u(g.cout),
            m: u(g.pixels()),
            tiles_n: u(tiles_n),
            tiles: u(tiles),
            accumulate: acc as u32,
            split: 1,
            _pad: [0; 2],
        }
    }
}

/// Whether the kernels run this convolution of `img` on this device: the wide matmul's
/// features, runs of 4 adjacent taps (kw % 4 == 0, no dilation along x), 8 taps a step
/// (C·kh·kw % 8 == 0) and an image of whole vec4s.
pub(crate) fn usable(img: &Tensor, g: &Geometry, p: &Conv2dParams) -> bool {
    usable_on(img.engine(), img.numel(), g, p)
}

/// [`usable`] for an image of `numel` elements.
fn usable_on(engine: &Engine, numel: usize, g: &Geometry, p: &Conv2dParams) -> bool {
    matmul_wide::usable(engine)
        && g.kw.is_multiple_of(4)
        && p.dilation[1] == 1
        && g.k().is_multiple_of(8)
        && numel.is_multiple_of(4)
}

/// Whether `steps` loop steps per invocation stay within the driver's limit.
fn loops_ok(engine: &Engine, steps: usize) -> bool {
    engine
        .max_loop_iterations()
        .is_none_or(|limit| steps + 64 <= limit as usize)
}

/// How a weight gradient runs, given the image its taps come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WeightPlan {
    /// [`weight_grad`]: dy channels-last, tiles of 16 taps × 64 channels (C·kh·kw ≥ 64).
    Rows,
    /// The split kernel for few taps: dy channels-first, pixels shared by several workgroups
    /// and their partial sums added by a reduction.
    Split,
    /// Neither: im2col and the matmul.
    Matmul,
}

/// The weight-gradient plan of `g` whose taps come from an image of `numel` elements.
pub(crate) fn weight_plan(
    engine: &Engine,
    numel: usize,
    g: &Geometry,
    p: &Conv2dParams,
) -> WeightPlan {
    // 8 pixels a step, and the step's carries along the rows and images.
    let steps = g.pixels().div_ceil(8) * (3 + 8 / g.ow + 8 / (g.oh * g.ow));
    if !usable_on(engine, numel, g, p) || !loops_ok(engine, steps) {
        WeightPlan::Matmul
    } else if g.cout.is_multiple_of(8) && g.k() >= 4 * DW_TILE.0 {
        WeightPlan::Rows
    } else if (g.oh * g.ow).is_multiple_of(4) {
        WeightPlan::Split
    } else {
        WeightPlan::Matmul
    }
}

/// Entry point and tile (pixels, channels). Measured on the W2 layers (lavapipe, % of the same-run
/// FMA peak): 32→64 16×64 36–39 %, 8×64 27 %, 32×64 24 % (256 accumulators spill too far);
/// 1→32 32×32 15–16 %, 16×32 14 %, 64×32 12 %.
fn tile(cout: usize) -> (&'static str, usize, usize) {
    match cout > 32 {
        true => ("conv2d_igemm_16x64", 16, 64),
        false => ("conv2d_igemm_32x32", 32, 32),
    }
}

/// y `[B, Cout, H', W']` = conv(x `[B, C, H, W]`, w `[Cout, C, kh, kw]`) (+ bias `[Cout]`);
/// an error where the kernel cannot run (see `Conv`, which falls back to im2col + matmul).
pub fn forward(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    for t in [x, w].into_iter().chain(bias) {
        t.expect_dtype(OP, DType::F32)?;
    }
    let g = Geometry::new(OP, x.shape(), w.shape(), p)?;
    if let Some(b) = bias {
        b.expect_shape(OP, &[g.cout])?;
    }
    forward_with(x, w, bias, &g, p)
}

/// [`forward`] for a checked geometry.
pub(crate) fn forward_with(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &Geometry,
    p: &Conv2dParams,
) -> Result<Tensor> {
    if !usable(x, g, p) {
        let why = format!("implicit GEMM cannot run {g:?} with {p:?} on this device");
        return Err(Error::bad(OP, why));
    }
    check_loops(x, OP, g.k() / 8)?;
    let y = Tensor::uninit(x.engine(), &g.y_shape(), DType::F32)?;
    let (mut entry, tile_m, tile_n) = tile(g.cout);
    // The narrow tile stores 4 pixels of a channel at once where they lie in one image.
    let store4 = entry == "conv2d_igemm_32x32" && (g.oh * g.ow).is_multiple_of(4);
    if store4 {
        entry = "conv2d_igemm_32x32_v4";
    }
    let tiles_n = g.cout.div_ceil(tile_n);
    let tiles = g.pixels().div_ceil(tile_m) * tiles_n;
    let mut tensors = vec![
        Bind::read("src4", x),
        Bind::read("w8", w),
        Bind::write(if store4 { "dst4" } else { "dst" }, &y),
    ];
    tensors.extend(bias.map(|b| Bind::read("bias", b)));
    let params = Params::new(g, p, tiles_n, tiles, false);
    let shader = &SHADERS[bias.is_some() as usize];
    super::launch(shader, entry, &[], &tensors, &params, tiles as u32)?;
    Ok(y)
}

/// dw `[Cout, C, kh, kw]` = Σ over pixels of dy ⊗ the taps of x, written into `into` (or added
/// to it with `accumulate`), from x `[B, C, H, W]` and dy channels-last `[B·H'·W', Cout]`; an
/// error where the kernel cannot run.
pub fn weight_grad(
    x: &Tensor,
    dy_rows: &Tensor,
    into: &Tensor,
    accumulate: bool,
    p: &Conv2dParams,
) -> Result<()> {
    for t in [x, dy_rows, into] {
        t.expect_dtype(OP, DType::F32)?;
    }
    let g = Geometry::new(OP, x.shape(), into.shape(), p)?;
    dy_rows.expect_shape(OP, &[g.pixels(), g.cout])?;
    weight_grad_with(x, dy_rows, into, accumulate, &g, p)
}

/// [`weight_grad`] for a checked geometry (`into` may be any shape of Cout·K elements).
pub(crate) fn weight_grad_with(
    x: &Tensor,
    dy_rows: &Tensor,
    into: &Tensor,
    accumulate: bool,
    g: &Geometry,
    p: &Conv2dParams,
) -> Result<()> {
    if weight_plan(x.engine(), x.numel(), g, p) != WeightPlan::Rows {
        let why = format!("implicit GEMM cannot run the weight gradient of {g:?} with {p:?}");
        return Err(Error::bad(OP, why));
    }
    let tiles_n = g.cout.div_ceil(DW_TILE.1);
    let tiles = g.k().div_ceil(DW_TILE.0) * tiles_n;
    let tensors = [
        Bind::read("src4", x),
        Bind::read("rows8", dy_rows),
        Bind::write("dst8", into),
    ];
    let params = Params::new(g, p, tiles_n, tiles, accumulate);
    let entry = "conv2d_igemm_dw_16x64";
    super::launch(&SHADERS[0], entry, &[], &tensors, &params, tiles as u32)
}

/// Whether [`transposed`] runs: the wide matmul's features, no dilation, every sub-pixel phase
/// with the same taps (kh % sh == kw % sw == 0), 8-float rows of dy (Cout % 8 == 0), at least
/// half of a 32-channel tile used (C ≥ 16: with C = 1 it ran at 1.3 % of peak, the col2im path
/// at 7 %), and within the driver's loop limit.
pub(crate) fn usable_transposed(rows: &Tensor, g: &Geometry, p: &Conv2dParams) -> bool {
    let steps = (g.kh / p.stride[0]) * (g.kw / p.stride[1]) * g.cout / 8;
    matmul_wide::usable(rows.engine())
        && g.c >= 16
        && p.dilation == [1, 1]
        && g.kh.is_multiple_of(p.stride[0])
        && g.kw.is_multiple_of(p.stride[1])
        && g.cout.is_multiple_of(8)
        && check_loops(rows, OP, steps).is_ok()
}

/// The adjoint of the dense convolution `g`: x `[B, C, H, W]` (+ bias `[C]`) from its output
/// channels-last, rows `[B·H'·W', Cout]`, and w `[Cout, C, kh, kw]` — the input gradient of a
/// Conv2d, or a ConvTranspose2d forward — gathered phase by phase (sub-pixel), with no column
/// matrix; an error where it cannot run.
pub(crate) fn transposed(
    rows: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: &Geometry,
    p: &Conv2dParams,
) -> Result<Tensor> {
    if !usable_transposed(rows, g, p) {
        let why = format!("the sub-pixel gather cannot run the adjoint of {g:?} with {p:?}");
        return Err(Error::bad(OP, why));
    }
    // w [Cout, C·kh·kw] -> [C·kh·kw, Cout]: a lane's channel reads 8 output channels a load.
    let wt = permute(w, [1, g.cout, g.k()], true)?;
    let x = Tensor::uninit(rows.engine(), &[g.b, g.c, g.h, g.w], DType::F32)?;
    // Measured on the W2 32→64 dX (lavapipe, same-run % of peak, loaded machine): 32 pixels ×
    // 32 channels 40 %, 16 × 64 31 %, 16 × 32 33 %.
    let (entry, tile_m, tile_n) = ("conv2d_igemm_t_32x32", 32, 32);
    let (phases, hp, wp) = (
        p.stride[0] * p.stride[1],
        g.h.div_ceil(p.stride[0]),
        g.w.div_ceil(p.stride[1]),
    );
    let m = g.b * hp * wp;
    let tiles_n = g.c.div_ceil(tile_n);
    let tiles = phases * m.div_ceil(tile_m) * tiles_n;
    let mut params = Params::new(g, p, tiles_n, tiles, false);
    params.m = m as u32;
    let mut tensors = vec![
        Bind::read("t8", rows),
        Bind::read("w8", &wt),
        Bind::write("dst", &x),
    ];
    tensors.extend(bias.map(|b| Bind::read("bias", b)));
    let shader = &SHADERS[bias.is_some() as usize];
    super::launch(shader, entry, &[], &tensors, &params, tiles as u32)?;
    Ok(x)
}

/// Workgroups that share the pixels of a split weight gradient: about 32 in all (a few per
/// core), each with at least 64 steps of 8 pixels.
fn splits(g: &Geometry, tiles: usize) -> usize {
    let steps = g.pixels().div_ceil(8);
    (32 / tiles).clamp(1, steps.div_ceil(64).max(1))
}

/// dw (+)= the weight gradient from x `[B, C, H, W]` (its taps) and dy `[B, Cout, H', W']`
/// channels-first, for convolutions with few taps ([`WeightPlan::Split`]).
pub(crate) fn weight_grad_split(
    x: &Tensor,
    dy: &Tensor,
    into: &Tensor,
    accumulate: bool,
    g: &Geometry,
    p: &Conv2dParams,
) -> Result<()> {
    if weight_plan(x.engine(), x.numel(), g, p) != WeightPlan::Split {
        let why = format!("the split weight gradient cannot run {g:?} with {p:?}");
        return Err(Error::bad(OP, why));
    }
    let tiles_n = g.cout.div_ceil(32);
    let per_split = g.k().div_ceil(16) * tiles_n;
    let split = splits(g, per_split);
    let parts = Tensor::uninit(x.engine(), &[split, g.cout * g.k()], DType::F32)?;
    let mut params = Params::new(g, p, tiles_n, split * per_split, accumulate);
    params.split = split as u32;
    let tensors = [
        Bind::read("src4", x),
        Bind::read("dy4", dy),
        Bind::read("old8", into),
        Bind::write("dst8", &parts),
    ];
    let entry = "conv2d_igemm_dw_split_16x32";
    let tiles = (split * per_split) as u32;
    super::launch(&SHADERS[0], entry, &[], &tensors, &params, tiles)?;
    reduce_first_into(Reduce::Sum, &parts, &into.reshape(&[g.cout * g.k()])?)
}
