//! Launchers for `shaders/random.wgsl`: counter-based Philox-4x32-10 uniforms, normals,
//! Bernoulli draws and random shifts and flips of images. CPU twin, known answers and
//! statistical tests: `kernels-tests/random.rs`.
//!
//! # The (seed, offset) convention
//! A draw is a pure function of `(seed, offset)` and the element index: element `i` is word
//! `i % 4` of Philox-4x32-10 with key = `seed` (low word first) and counter = `offset + i / 4`
//! (as a 64-bit number, low word first, then two zero words). `offset` counts Philox *blocks* of
//! 4 values, so a draw of `n` values consumes `blocks(n) = ceil(n / 4)` counters; advance `offset`
//! by [`blocks`]`(n)` after each draw and consecutive draws never overlap: the next draw is the
//! continuation of one long stream from its element `4·blocks(n)`. Uniform, normal and Bernoulli
//! draws of the same `(seed, offset)` read the same words, so give each its own counter range.

use crate::engine::{Bind, DType, Engine, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("random", "philox/philox.wgsl", "random.wgsl");

/// Invocations per workgroup; each computes one Philox block of 4 values.
const WG: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    blocks: u32,
    key: [u32; 2],
    offset: [u32; 2],
    _pad: [u32; 2],
}

/// Philox counters a draw of `n` values consumes: the amount to advance `offset` by.
pub fn blocks(n: usize) -> u64 {
    n.div_ceil(4) as u64
}

/// Checks dtypes, picks the vec4-store entry when `n % 4 == 0`, and records the draw.
fn launch(
    op: &'static str,
    normal: bool,
    probs: Option<&Tensor>,
    out: &Tensor,
    seed: u64,
    offset: u64,
) -> Result<()> {
    out.expect_dtype(op, DType::F32)?;
    if let Some(p) = probs {
        p.expect_dtype(op, DType::F32)?;
        out.expect_shape(op, p.shape())?;
    }
    let n = out.numel();
    let wide = n.is_multiple_of(4);
    let entry = match (probs.is_some(), wide) {
        (false, true) => "sample4",
        (false, false) => "sample1",
        (true, true) => "bernoulli4",
        (true, false) => "bernoulli1",
    };
    let params = Params {
        n: n as u32,
        blocks: blocks(n) as u32,
        key: [seed as u32, (seed >> 32) as u32],
        offset: [offset as u32, (offset >> 32) as u32],
        _pad: [0; 2],
    };
    let constants: &[(&str, f64)] = if probs.is_some() {
        &[]
    } else {
        &[("NORMAL", normal as u32 as f64)]
    };
    let [probs_var, out_var] = if wide {
        ["probs4", "out4"]
    } else {
        ["probs", "out"]
    };
    let mut tensors = vec![Bind::write(out_var, out)];
    tensors.extend(probs.map(|p| Bind::read(probs_var, p)));
    let workgroups = n.div_ceil(4 * WG) as u32;
    super::launch(&SHADER, entry, constants, &tensors, &params, workgroups)
}

/// Fills `out` (f32) with uniforms in [0, 1): the top 24 bits of each word times 2^-24, exact.
pub fn uniform_into(out: &Tensor, seed: u64, offset: u64) -> Result<()> {
    launch("uniform", false, None, out, seed, offset)
}

/// A new tensor of uniforms in [0, 1) (see [`uniform_into`] and the module's offset convention).
pub fn uniform(engine: &Engine, shape: &[usize], seed: u64, offset: u64) -> Result<Tensor> {
    let out = Tensor::uninit(engine, shape, DType::F32)?;
    uniform_into(&out, seed, offset)?;
    Ok(out)
}

/// Fills `out` (f32) with standard normals by Box–Muller: words (0, 1) and (2, 3) of a block
/// give u1 = (k + 1)·2^-24 in (0, 1] and θ = π·(k·2^-23 - 1), and the pair r·cos θ, r·sin θ with
/// r = sqrt(-2 ln u1), so |z| ≤ 5.77; ln u1 near 1 comes from an atanh series of the exact
/// 1 - u1, and θ stays in [-π, π) where WGSL bounds sin and cos. Those builtins are not correctly
/// rounded: on lavapipe |gpu − exact| ≤ 1.6e-7·(1 + |z|) over 4·10⁶ draws (tested with 5e-7);
/// WGSL allows other devices up to 2^-11 absolute in sin and cos.
pub fn normal_into(out: &Tensor, seed: u64, offset: u64) -> Result<()> {
    launch("normal", true, None, out, seed, offset)
}

/// A new tensor of standard normals (see [`normal_into`]).
pub fn normal(engine: &Engine, shape: &[usize], seed: u64, offset: u64) -> Result<Tensor> {
    let out = Tensor::uninit(engine, shape, DType::F32)?;
    normal_into(&out, seed, offset)?;
    Ok(out)
}

/// `out[i] = 1.0 if u[i] < probs[i] else 0.0` with `u` the [`uniform`] draw of the same
/// `(seed, offset)`, compared in f32 (dynamic binarisation, Bernoulli samples). Same shapes;
/// `out` must not be `probs`.
pub fn bernoulli_into(probs: &Tensor, out: &Tensor, seed: u64, offset: u64) -> Result<()> {
    launch("bernoulli", false, Some(probs), out, seed, offset)
}

/// A new tensor of Bernoulli(`probs`) samples (see [`bernoulli_into`]).
pub fn bernoulli(probs: &Tensor, seed: u64, offset: u64) -> Result<Tensor> {
    let out = Tensor::uninit(probs.engine(), probs.shape(), DType::F32)?;
    bernoulli_into(probs, &out, seed, offset)?;
    Ok(out)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AugmentParams {
    n: u32,
    side: u32,
    max_shift: u32,
    flip: u32,
    key: [u32; 2],
    offset: [u32; 2],
}

/// Random shifts and flips of square images `x` `[B, side²]` (f32), a new tensor: image `b` is
/// flipped left to right with probability 1/2 when `flip`, then shifted by (dy, dx), each
/// uniform in `[-max_shift, max_shift]`, with zeros shifted in:
/// `out[b, y, x] = x[b, y - dy, x0 - dx]` with `x0 = side - 1 - x` when flipped, else `x`.
/// Image `b` draws from Philox block `offset + b` (dy: word 0 mod 2·max_shift + 1, dx: word 1,
/// the flip: bit 0 of word 2), so a batch of `B` images consumes `B` counters.
pub fn shift_flip(
    x: &Tensor,
    side: usize,
    max_shift: usize,
    flip: bool,
    seed: u64,
    offset: u64,
) -> Result<Tensor> {
    const OP: &str = "random::shift_flip";
    x.expect_dtype(OP, DType::F32)?;
    let fits = x.shape().len() == 2 && side > 0 && x.shape()[1] == side * side;
    if !fits || max_shift >= side {
        let why = format!(
            "needs images [B, side²] with side {side} and a shift below the side, got {:?} and a shift of {max_shift}",
            x.shape()
        );
        return Err(crate::engine::Error::bad(OP, why));
    }
    let n = x.numel();
    let n32 = u32::try_from(n)
        .map_err(|_| crate::engine::Error::bad(OP, format!("{n} pixels exceed a u32 index")))?;
    let out = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
    if n == 0 {
        return Ok(out);
    }
    let params = AugmentParams {
        n: n32,
        side: side as u32,
        max_shift: max_shift as u32,
        flip: flip as u32,
        key: [seed as u32, (seed >> 32) as u32],
        offset: [offset as u32, (offset >> 32) as u32],
    };
    let tensors = [Bind::read("probs", x), Bind::write("out", &out)];
    let workgroups = n.div_ceil(WG) as u32;
    super::launch(&SHADER, "shift_flip", &[], &tensors, &params, workgroups)?;
    Ok(out)
}
