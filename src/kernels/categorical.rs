//! Launchers for `shaders/categorical.wgsl`: one-hot maps of u32 codes and one autoregressive
//! sampling step that writes the drawn codes on the GPU. Tests: `kernels-tests/categorical.rs`.

use super::conv2d::check_loops;
use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("categorical", "categorical.wgsl");

const WG: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    k: u32,
    p: u32,
    total: u32,
    pos: u32,
    u_offset: u32,
    inv_temp: f32,
    rows: u32,
    _pad: u32,
}

/// Checks a code map `codes` u32 [B, S...] against `k` categories; returns (B, P = ΠS).
fn code_map(op: &'static str, codes: &Tensor, k: usize) -> Result<(usize, usize)> {
    codes.expect_dtype(op, DType::U32)?;
    if k == 0 || k >= 1 << 24 {
        return Err(Error::bad(
            op,
            format!("{k} categories; 1 to 2^24 supported"),
        ));
    }
    check_loops(codes, op, 3 * k)?;
    let b = codes.shape()[0];
    Ok((b, codes.numel() / b))
}

/// The one-hot map's shape for `codes` [B, S...]: [B, K, S...].
fn map_shape(codes: &Tensor, k: usize) -> Vec<usize> {
    let mut shape = codes.shape().to_vec();
    shape.insert(1, k);
    shape
}

/// codes u32 [B, S...] -> f32 [B, K, S...], 1.0 at each code's category (a class one-hot
/// `[B, K]` from labels `[B]`, or a PixelCNN's input map `[B, K, H, W]` from codes `[B, H, W]`). A code
/// ≥ K gives a column of zeros (the GPU cannot report it without a readback).
pub fn one_hot(codes: &Tensor, k: usize) -> Result<Tensor> {
    let (b, p) = code_map("one_hot", codes, k)?;
    let map = Tensor::uninit(codes.engine(), &map_shape(codes, k), DType::F32)?;
    let params = Params {
        k: k as u32,
        p: p as u32,
        total: (b * p) as u32,
        ..Params::default()
    };
    let groups = (b * p).div_ceil(WG) as u32;
    super::launch(
        &SHADER,
        "categorical_one_hot",
        &[],
        &[Bind::read("codes_in", codes), Bind::write("map", &map)],
        &params,
        groups,
    )?;
    Ok(map)
}

/// One autoregressive sampling step at position `pos` of every image: with logits [B·R, K] (a
/// row per position of each image's first R ≤ P = ΠS positions, R > pos: a model run on the
/// rows of the maps down to `pos` only), image b draws code ~ softmax(logits[b·R + pos] /
/// temperature) by inverse CDF with the uniform `u[u_offset + b]` (f32 in [0, 1), e.g.
/// `random::uniform`), and the code is written to `codes` u32 [B, S...] at `pos` and as a
/// one-hot column into `map` f32 [B, K, S...]. Nothing else is touched and nothing is read back.
pub fn sample_step(
    logits: &Tensor,
    u: &Tensor,
    u_offset: usize,
    pos: usize,
    temperature: f32,
    codes: &Tensor,
    map: &Tensor,
) -> Result<()> {
    let op = "categorical_sample";
    let mismatch = || Error::ShapeMismatch {
        op,
        lhs: logits.shape().to_vec(),
        rhs: codes.shape().to_vec(),
    };
    let &[n_rows, k] = logits.shape() else {
        return Err(mismatch());
    };
    let (b, p) = code_map(op, codes, k)?;
    logits.expect_dtype(op, DType::F32)?;
    u.expect_dtype(op, DType::F32)?;
    map.expect_dtype(op, DType::F32)?;
    map.expect_shape(op, &map_shape(codes, k))?;
    let rows = n_rows / b;
    if rows * b != n_rows || rows > p {
        return Err(mismatch());
    }
    if pos >= rows || u_offset + b > u.numel() || !(temperature > 0.0 && temperature.is_finite()) {
        let why = format!(
            "position {pos} of {rows} rows, uniforms {u_offset}..{} of {}, temperature {temperature} (must be > 0)",
            u_offset + b,
            u.numel()
        );
        return Err(Error::bad(op, why));
    }
    let params = Params {
        k: k as u32,
        p: p as u32,
        total: b as u32,
        pos: pos as u32,
        u_offset: u_offset as u32,
        inv_temp: 1.0 / temperature,
        rows: rows as u32,
        _pad: 0,
    };
    let tensors = [
        Bind::read("logits", logits),
        Bind::read("u", u),
        Bind::write("codes", codes),
        Bind::write("map", map),
    ];
    super::launch(&SHADER, op, &[], &tensors, &params, b.div_ceil(WG) as u32)
}
