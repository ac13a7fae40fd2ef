//! Launchers for `shaders/reduce.wgsl`: sum / mean / max over the last or the first axis, the
//! whole-tensor sum and log-sum-exp over the last axis. CPU twin and tests: `kernels-tests/reduce.rs`.

use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};
use bytemuck::Zeroable;

pub const SHADER: Shader = shader!("reduce", "reduce.wgsl");

const WG: usize = 64;
/// Elements one invocation reduces per pass: far below lavapipe's 65,535 loop iterations per
/// invocation, and enough work per invocation to amortise its start. Longer runs take more
/// passes, each shrinking them 4,096-fold.
pub(crate) const SEGMENT: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    outputs: u32,
    inner: u32,
    kstride: u32,
    istride: u32,
    estride: u32,
    len: u32,
    n: u32,
    denom: f32,
    scale_a: f32,
    scale_b: f32,
    weight: f32,
    _pad: u32,
}

/// Reductions over an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
}

impl Reduce {
    pub const ALL: [Reduce; 3] = [Reduce::Sum, Reduce::Mean, Reduce::Max];
}

/// What one result is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Mean,
    Max,
    LogSumExp,
    /// Softmax statistics: the pair (max, log Σ exp(v − max)) per run.
    Stats,
}

impl Op {
    /// The shader's `OP` (a mean is a sum divided by `denom`).
    fn code(self) -> u32 {
        match self {
            Op::Sum | Op::Mean => 0,
            Op::Max => 1,
            Op::LogSumExp => 2,
            Op::Stats => 3,
        }
    }

    /// What a pass over pieces of longer runs leaves for the next pass.
    fn partial(self) -> Op {
        match self {
            Op::Mean => Op::Sum,
            Op::LogSumExp => Op::Stats,
            op => op,
        }
    }
}

impl From<Reduce> for Op {
    fn from(r: Reduce) -> Op {
        match r {
            Reduce::Sum => Op::Sum,
            Reduce::Mean => Op::Mean,
            Reduce::Max => Op::Max,
        }
    }
}

/// Which axis of `x` viewed as `[rows, cols]` is reduced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Axis {
    Rows,
    Cols,
}

/// Records `op` over `axis` of `x` viewed as `[rows, cols]` into `out` (checked by the caller).
/// Reduced lengths above SEGMENT first become partials (SEGMENT-element pieces), pass after pass;
/// log-sum-exp pieces leave (max, log-sum) pairs so that huge values keep their precision.
fn reduce_view(
    op: Op,
    x: &Tensor,
    out: &Tensor,
    [mut rows, mut cols]: [usize; 2],
    axis: Axis,
) -> Result<()> {
    let denom = match (op, axis) {
        (Op::Mean, Axis::Rows) => rows as f32,
        (Op::Mean, Axis::Cols) => cols as f32,
        _ => 1.0,
    };
    let wide = axis == Axis::Rows
        && cols.is_multiple_of(4)
        && rows <= SEGMENT
        && matches!(op, Op::Sum | Op::Mean | Op::Max);
    if wide {
        let p = Params {
            outputs: (cols / 4) as u32,
            inner: (cols / 4) as u32,
            kstride: 0,
            istride: 0,
            estride: 0,
            len: rows as u32,
            n: (rows * cols) as u32,
            denom,
            ..Params::zeroed()
        };
        return super::launch(
            &SHADER,
            "reduce_rows4",
            &[("OP", op.code() as f64)],
            &[Bind::read("x4", x), Bind::write("out4", out)],
            &p,
            p.outputs.div_ceil(WG as u32),
        );
    }
    let (mut src, mut pairs) = (x.clone(), false);
    loop {
        let (len, kept) = match axis {
            Axis::Rows => (rows, cols),
            Axis::Cols => (cols, rows),
        };
        let (pieces, chunk) = (len.div_ceil(SEGMENT), len.min(SEGMENT));
        let step = if pieces == 1 { op } else { op.partial() };
        let dst = if pieces == 1 {
            out.clone()
        } else {
            let width = if step == Op::Stats { 2 } else { 1 };
            let shape = match axis {
                Axis::Rows => [pieces, cols],
                Axis::Cols => [rows, pieces * width],
            };
            Tensor::uninit(x.engine(), &shape, DType::F32)?
        };
        let (inner, kstride, istride, estride) = match axis {
            Axis::Rows => (cols, chunk * cols, 1, cols),
            Axis::Cols => (pieces, cols, SEGMENT, 1),
        };
        let p = Params {
            outputs: (kept * pieces) as u32,
            inner: inner as u32,
            kstride: kstride as u32,
            istride: istride as u32,
            estride: estride as u32,
            len: chunk as u32,
            n: (rows * cols) as u32,
            denom: if pieces == 1 { denom } else { 1.0 },
            ..Params::zeroed()
        };
        super::launch(
            &SHADER,
            "reduce",
            &[("OP", step.code() as f64), ("PAIRS", pairs as u32 as f64)],
            &[Bind::read("x", &src), Bind::write("out", &dst)],
            &p,
            p.outputs.div_ceil(WG as u32),
        )?;
        if pieces == 1 {
            return Ok(());
        }
        match axis {
            Axis::Rows => rows = pieces,
            Axis::Cols => cols = pieces,
        }
        (src, pairs) = (dst, step == Op::Stats);
    }
}

/// Values one [`mean_pair`] input may hold (one invocation sums it).
pub const MEAN_PAIR_MAX: usize = SEGMENT;

/// `(mean(a) + w·mean(b), mean(a), mean(b))`, each `[1]`, from `[Na]` and `[Nb]` (each at most
/// [`MEAN_PAIR_MAX`]) in one dispatch: a VAE's loss recon + β·KL and its two logged terms.
pub fn mean_pair(a: &Tensor, b: &Tensor, w: f32) -> Result<[Tensor; 3]> {
    let op = "mean_pair";
    let p = pair_params(op, a, b, w)?;
    let new = || Tensor::uninit(a.engine(), &[1], DType::F32);
    let (loss, ma, mb) = (new()?, new()?, new()?);
    let tensors = [
        Bind::read("x", a),
        Bind::read("y", b),
        Bind::write("out", &loss),
        Bind::write("mean_a", &ma),
        Bind::write("out_b", &mb),
    ];
    super::launch(&SHADER, "mean_pair", &[], &tensors, &p, 1)?;
    Ok([loss, ma, mb])
}

/// The backward of [`mean_pair`] from the loss's gradient `g` `[1]`: `(g/Na, g·w/Nb)` broadcast
/// to a's and b's shapes, in one dispatch.
pub fn mean_pair_backward(g: &Tensor, a: &Tensor, b: &Tensor, w: f32) -> Result<[Tensor; 2]> {
    let op = "mean_pair_backward";
    let p = pair_params(op, a, b, w)?;
    g.expect_shape(op, &[1])?;
    let da = Tensor::uninit(a.engine(), a.shape(), DType::F32)?;
    let db = Tensor::uninit(a.engine(), b.shape(), DType::F32)?;
    let tensors = [
        Bind::read("x", g),
        Bind::write("out", &da),
        Bind::write("out_b", &db),
    ];
    let groups = p.len.max(p.n).div_ceil(WG as u32);
    super::launch(&SHADER, "mean_pair_backward", &[], &tensors, &p, groups)?;
    Ok([da, db])
}

fn pair_params(op: &'static str, a: &Tensor, b: &Tensor, w: f32) -> Result<Params> {
    for t in [a, b] {
        t.expect_dtype(op, DType::F32)?;
        if t.numel() > MEAN_PAIR_MAX {
            let why = format!(
                "{} values exceed the {MEAN_PAIR_MAX} one pass sums",
                t.numel()
            );
            return Err(Error::bad(op, why));
        }
    }
    Ok(Params {
        len: a.numel() as u32,
        n: b.numel() as u32,
        estride: 1,
        scale_a: 1.0 / a.numel() as f32,
        scale_b: 1.0 / b.numel() as f32,
        weight: w,
        ..Params::zeroed()
    })
}

/// `x` viewed as `[rows, cols]` split at its first or last axis, and the shape without that axis
/// (`[1]` when nothing is left). `None` as axis: the whole tensor as one row.
fn split(name: &'static str, x: &Tensor, axis: Option<Axis>) -> Result<([usize; 2], Vec<usize>)> {
    x.expect_dtype(name, DType::F32)?;
    if u32::try_from(x.numel()).is_err() {
        return Err(Error::bad(
            name,
            "more than 2^32 - 1 elements (indices are u32)",
        ));
    }
    let mut shape = x.shape().to_vec();
    let (n, at) = match axis {
        None => return Ok(([1, x.numel()], vec![1])),
        Some(_) if shape.is_empty() => return Err(Error::bad(name, "a rank-0 tensor has no axis")),
        Some(Axis::Rows) => (shape.remove(0), Axis::Rows),
        Some(Axis::Cols) => (shape.pop().unwrap_or(1), Axis::Cols),
    };
    let view = match at {
        Axis::Rows => [n, x.numel() / n],
        Axis::Cols => [x.numel() / n, n],
    };
    Ok((view, if shape.is_empty() { vec![1] } else { shape }))
}

/// Checks `x` and `out`, then records `op` over `axis` of `x` into `out`.
fn reduce_into(
    name: &'static str,
    op: Op,
    x: &Tensor,
    out: &Tensor,
    axis: Option<Axis>,
) -> Result<()> {
    let (view, shape) = split(name, x, axis)?;
    out.expect_dtype(name, DType::F32)?;
    out.expect_shape(name, &shape)?;
    reduce_view(op, x, out, view, axis.unwrap_or(Axis::Cols))
}

/// `op` over `axis` of `x` into a new tensor.
fn reduce(name: &'static str, op: Op, x: &Tensor, axis: Option<Axis>) -> Result<Tensor> {
    let out = Tensor::uninit(x.engine(), &split(name, x, axis)?.1, DType::F32)?;
    reduce_into(name, op, x, &out, axis)?;
    Ok(out)
}

/// `out = op(x)` over the last axis: `[…, cols] -> […]` (`[cols] -> [1]`).
pub fn reduce_last_into(op: Reduce, x: &Tensor, out: &Tensor) -> Result<()> {
    reduce_into("reduce_last", op.into(), x, out, Some(Axis::Cols))
}

/// `op(x)` over the last axis: `[…, cols] -> […]` (`[cols] -> [1]`).
pub fn reduce_last(op: Reduce, x: &Tensor) -> Result<Tensor> {
    reduce("reduce_last", op.into(), x, Some(Axis::Cols))
}

/// `out = op(x)` over the first axis: `[rows, …] -> […]` (`[rows] -> [1]`).
pub fn reduce_first_into(op: Reduce, x: &Tensor, out: &Tensor) -> Result<()> {
    reduce_into("reduce_first", op.into(), x, out, Some(Axis::Rows))
}

/// `op(x)` over the first axis: `[rows, …] -> […]` (`[rows] -> [1]`).
pub fn reduce_first(op: Reduce, x: &Tensor) -> Result<Tensor> {
    reduce("reduce_first", op.into(), x, Some(Axis::Rows))
}

/// `out = log Σ exp(x)` over the last axis, max-shifted: `[…, cols] -> […]` (`[cols] -> [1]`).
pub fn logsumexp_last_into(x: &Tensor, out: &Tensor) -> Result<()> {
    reduce_into("logsumexp_last", Op::LogSumExp, x, out, Some(Axis::Cols))
}

/// `log Σ exp(x)` over the last axis, max-shifted: `[…, cols] -> […]` (`[cols] -> [1]`).
pub fn logsumexp_last(x: &Tensor) -> Result<Tensor> {
    reduce("logsumexp_last", Op::LogSumExp, x, Some(Axis::Cols))
}

/// `out[0] = Σ x` over every element, all on the GPU (no readback).
pub fn sum_all_into(x: &Tensor, out: &Tensor) -> Result<()> {
    reduce_into("sum_all", Op::Sum, x, out, None)
}

/// `Σ x` over every element -> `[1]`.
pub fn sum_all(x: &Tensor) -> Result<Tensor> {
    reduce("sum_all", Op::Sum, x, None)
}

/// Per row of `x` viewed as `[rows, cols]`: `(max, log Σ exp(v − max))` -> `[rows, 2]`, from
/// which softmax is `exp(v − max − log_sum)` without the rounding of a large log-sum-exp.
pub(crate) fn softmax_stats(name: &'static str, x: &Tensor) -> Result<Tensor> {
    let (view, _) = split(name, x, Some(Axis::Cols))?;
    let out = Tensor::uninit(x.engine(), &[view[0], 2], DType::F32)?;
    reduce_view(Op::Stats, x, &out, view, Axis::Cols)?;
    Ok(out)
}
