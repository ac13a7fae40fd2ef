//! Launchers for `shaders/gated.wgsl`: the gated activation tanh(a + ca)·σ(b + cb) of gated
//! PixelCNN blocks, fused with its conditioning, and its gradient. Tests: `kernels-tests/gated.rs`.

use super::conv2d::check_loops;
use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

/// `gated.wgsl` without a condition and with one (binding `cond` and `dcond`).
pub const SHADERS: [Shader; 2] = [
    shader!("gated", "gated/plain.wgsl", "gated.wgsl"),
    shader!("gated_cond", "gated/cond.wgsl", "gated.wgsl"),
];

/// The shader and override constants for condition `mode` (0 none, 1 per channel, 2 per
/// element).
fn variant(mode: u32) -> (&'static Shader, Vec<(&'static str, f64)>) {
    match mode {
        0 => (&SHADERS[0], vec![]),
        m => (&SHADERS[1], vec![("COND", m as f64)]),
    }
}

const WG: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    p: u32,
    positions: u32,
    total: u32,
    _pad: u32,
}

/// Checks x [B, 2p, S...] and the condition; returns the params, the output shape [B, p, S...]
/// and the condition mode (0 none, 1 per image and channel, 2 per element).
fn setup(op: &'static str, x: &Tensor, cond: Option<&Tensor>) -> Result<(Params, Vec<usize>, u32)> {
    let s = x.shape();
    if s.len() < 2 || !s[1].is_multiple_of(2) {
        return Err(Error::bad(
            op,
            format!("x must be [B, 2p, ...] with an even channel count, got {s:?}"),
        ));
    }
    x.expect_dtype(op, DType::F32)?;
    let (b, p) = (s[0], s[1] / 2);
    let positions = x.numel() / (b * 2 * p);
    check_loops(x, op, positions)?;
    let mode = match cond {
        None => 0,
        Some(c) => {
            c.expect_dtype(op, DType::F32)?;
            if c.shape() == s {
                2
            } else if c.shape().get(..2) == Some(&s[..2]) && c.numel() == b * 2 * p {
                1
            } else {
                return Err(Error::ShapeMismatch {
                    op,
                    lhs: s.to_vec(),
                    rhs: c.shape().to_vec(),
                });
            }
        }
    };
    let mut out = s.to_vec();
    out[1] = p;
    let params = Params {
        p: p as u32,
        positions: positions as u32,
        total: (b * p) as u32,
        _pad: 0,
    };
    Ok((params, out, mode))
}

/// y = tanh(a + ca)·σ(b + cb) for x = [a, b] split along axis 1: x [B, 2p, S...] -> y
/// [B, p, S...]. `cond`, when given, is added before the activations: [B, 2p] (or [B, 2p, 1,
/// ...]: one value per image and channel, e.g. a class embedding) or shaped like x (a map).
pub fn gated(x: &Tensor, cond: Option<&Tensor>) -> Result<Tensor> {
    let (params, shape, mode) = setup("gated", x, cond)?;
    let y = Tensor::uninit(x.engine(), &shape, DType::F32)?;
    let groups = (params.total as usize).div_ceil(WG) as u32;
    let mut tensors = vec![Bind::read("x", x), Bind::write("y", &y)];
    tensors.extend(cond.map(|c| Bind::read("cond", c)));
    let (shader, constants) = variant(mode);
    super::launch(
        shader,
        "gated_forward",
        &constants,
        &tensors,
        &params,
        groups,
    )?;
    Ok(y)
}

/// The gradients of [`gated`] from g = ∂L/∂y [B, p, S...]: ∂L/∂x, shaped as x, and ∂L/∂cond,
/// shaped as cond (when given).
pub fn gated_backward(
    x: &Tensor,
    cond: Option<&Tensor>,
    g: &Tensor,
) -> Result<(Tensor, Option<Tensor>)> {
    let op = "gated_backward";
    let (params, shape, mode) = setup(op, x, cond)?;
    g.expect_dtype(op, DType::F32)?;
    g.expect_shape(op, &shape)?;
    let dx = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
    let dcond = cond
        .map(|c| Tensor::uninit(x.engine(), c.shape(), DType::F32))
        .transpose()?;
    let groups = (params.total as usize).div_ceil(WG) as u32;
    let mut tensors = vec![
        Bind::read("x", x),
        Bind::read("g", g),
        Bind::write("y", &dx),
    ];
    if let (Some(c), Some(dc)) = (cond, &dcond) {
        tensors.extend([Bind::read("cond", c), Bind::write("dcond", dc)]);
    }
    let (shader, constants) = variant(mode);
    super::launch(
        shader,
        "gated_backward",
        &constants,
        &tensors,
        &params,
        groups,
    )?;
    Ok((dx, dcond))
}
