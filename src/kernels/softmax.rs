//! Launchers for `shaders/softmax.wgsl`: row-wise softmax and log-softmax over the last axis.
//! CPU twin and tests: `kernels-tests/softmax.rs`.

use super::reduce::{SEGMENT, softmax_stats};
use crate::engine::{Bind, DType, Result, Shader, Tensor, shader};

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
    let rows = x.numel() / cols;
    let pieces = cols.div_ceil(SEGMENT);
    let p = Params {
        rows: rows as u32,
        cols: cols as u32,
        pieces: pieces as u32,
        piece: SEGMENT as u32,
    };
    super::launch(
        &SHADER,
        "normalize",
        &[("LOG", log as u32 as f64)],
        &[
            Bind::read("x", x),
            Bind::read("stats", &stats),
            Bind::write("out", out),
        ],
        &p,
        (rows * pieces).div_ceil(WG) as u32,
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
