//! Launchers for `shaders/softmax.wgsl`: row-wise softmax and log-softmax over the last axis,
//! and the backward passes of log-softmax and of `reduce`'s log-sum-exp.
//! CPU twin and tests: `kernels-tests/softmax.rs`.

use super::reduce::{Reduce, SEGMENT, reduce_last, softmax_stats};
use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("softmax", "softmax.wgsl");

const WG: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    pieces: u32,
    piece: u32,
}

/// Two dispatches: the row statistics (reduce.wgsl), then the normalisation.
fn launch(name: &'static str, log: bool, x: &Tensor, out: &Tensor) -> Result<()> {
    x.expect_dtype(name, DType::F32)?;
    out.expect_dtype(name, DType::F32)?;
    out.expect_shape(name, x.shape())?;
    let stats = softmax_stats(name, x)?;
    let cols = x.shape()[x.shape().len() - 1];
    let tensors = [
        Bind::read("x", x),
        Bind::read("stats", &stats),
        Bind::write("out", out),
    ];
    let log = [("LOG", log as u32 as f64)];
    launch_rows(
        "normalize",
        &log,
        (x.numel() / cols, cols),
        SEGMENT,
        &tensors,
    )
}

/// `out = softmax(x)` over the last axis (same shape), max-shifted.
pub fn softmax_into(x: &Tensor, out: &Tensor) -> Result<()> {
    launch("softmax", false, x, out)
}

/// `softmax(x)` over the last axis, max-shifted.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let out = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
    softmax_into(x, &out)?;
    Ok(out)
}

/// `out = log_softmax(x) = x − logsumexp(x)` over the last axis (same shape).
pub fn log_softmax_into(x: &Tensor, out: &Tensor) -> Result<()> {
    launch("log_softmax", true, x, out)
}

/// `log_softmax(x)` over the last axis.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let out = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
    log_softmax_into(x, &out)?;
    Ok(out)
}

/// `x` viewed as `[rows, cols]` over its last axis, checked: f32, rank ≥ 1, u32 indices.
fn row_view(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    x.expect_dtype(op, DType::F32)?;
    let &cols = x
        .shape()
        .last()
        .ok_or_else(|| Error::bad(op, "a rank-0 tensor has no last axis"))?;
    if u32::try_from(x.numel()).is_err() {
        return Err(Error::bad(
            op,
            "more than 2^32 - 1 elements (indices are u32)",
        ));
    }
    Ok((x.numel() / cols, cols))
}

/// Records `entry` over `rows` rows of `cols` in pieces of at most `piece` elements.
fn launch_rows(
    entry: &'static str,
    constants: &[(&'static str, f64)],
    (rows, cols): (usize, usize),
    piece: usize,
    tensors: &[Bind],
) -> Result<()> {
    let pieces = cols.div_ceil(piece);
    let p = Params {
        rows: rows as u32,
        cols: cols as u32,
        pieces: pieces as u32,
        piece: piece as u32,
    };
    let workgroups = (rows * pieces).div_ceil(WG) as u32;
    super::launch(&SHADER, entry, constants, tensors, &p, workgroups)
}

/// Backward of `y = log_softmax(x)` over the last axis: `dx = dy − softmax(x)·Σ_row dy`, from
/// `y` (not x: `exp(y)` is the softmax) and `dy`, both f32 of one shape -> dx of that shape.
/// Rows of up to 4,096 take one fused pass (row sum, then dx); longer rows take their sums from
/// `reduce` first (lavapipe ends an invocation's loops after 65,535 iterations).
pub fn log_softmax_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let op = "log_softmax_backward";
    let view = row_view(op, y)?;
    dy.expect_dtype(op, DType::F32)?;
    dy.expect_shape(op, y.shape())?;
    let dx = Tensor::uninit(y.engine(), y.shape(), DType::F32)?;
    if view.1 <= SEGMENT {
        let tensors = [
            Bind::read("x", y),
            Bind::read("dy", dy),
            Bind::write("out", &dx),
        ];
        return launch_rows(op, &[], view, view.1, &tensors).map(|()| dx);
    }
    let sums = reduce_last(Reduce::Sum, dy)?;
    let entry = "log_softmax_backward_summed";
    let tensors = [
        Bind::read("x", y),
        Bind::read("dy", dy),
        Bind::read("dy_sums", &sums),
        Bind::write("out", &dx),
    ];
    launch_rows(entry, &[], view, SEGMENT, &tensors).map(|()| dx)
}

/// Backward of `y = logsumexp_last(x)`: `dx = dy[row]·softmax(x)[row]`, with `dy` f32 shaped
/// like y (x's shape without the last axis; `[1]` for a 1-D x) -> dx shaped like x. Two
/// dispatches: the row statistics (max-shifted, as the forward), then dx in pieces.
pub fn logsumexp_last_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let op = "logsumexp_last_backward";
    let view = row_view(op, x)?;
    let mut reduced = x.shape()[..x.shape().len() - 1].to_vec();
    if reduced.is_empty() {
        reduced.push(1);
    }
    dy.expect_dtype(op, DType::F32)?;
    dy.expect_shape(op, &reduced)?;
    let stats = softmax_stats(op, x)?;
    let dx = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
    let tensors = [
        Bind::read("x", x),
        Bind::read("stats", &stats),
        Bind::read("dy", dy),
        Bind::write("out", &dx),
    ];
    launch_rows("logsumexp_backward", &[], view, SEGMENT, &tensors).map(|()| dx)
}
