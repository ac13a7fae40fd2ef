//! The wide-load matmul module (`shaders/matmul_wide.wgsl` after `shaders/matmul.wgsl`):
//! entry choice and tiles; driven by `matmul::matmul_into`. Tests: `kernels-tests/matmul_wide.rs`.

use super::matmul_subgroup;
use crate::engine::{Engine, Shader, shader};

/// Without and with a bias row.
pub const SHADERS: [Shader; 2] = [
    shader!(
        "matmul_wide",
        "bias/no_bias.wgsl",
        "matmul.wgsl",
        "matmul_wide.wgsl"
    ),
    shader!(
        "matmul_wide_bias",
        "bias/bias.wgsl",
        "matmul.wgsl",
        "matmul_wide.wgsl"
    ),
];

/// Whether the wide kernels can run: subgroups of at least 8 and 64-bit integers (their
/// `vec4<u64>` views load 8 floats at a time).
pub fn usable(engine: &Engine) -> bool {
    matmul_subgroup::usable(engine) && engine.features().contains(wgpu::Features::SHADER_INT64)
}

/// Entry point and output tile (rows, columns) for an (M, K, N) product, if its sides allow:
/// 8-float runs along K of A (or along M of a transposed A) and along N or K of B, and C in vec4s.
/// A transposed A with M ≤ 32 takes the 32-row tile (the 64-row one would idle half its lanes;
/// measured 1.3–2× faster at 32×128×256), which needs only M % 4.
pub fn plan(m: usize, k: usize, n: usize, trans_a: bool) -> Option<(&'static str, usize, usize)> {
    if !k.is_multiple_of(8) || !n.is_multiple_of(8) {
        return None;
    }
    match trans_a {
        // 32 columns per workgroup: fewer workgroups and fewer A loads per FMA than the 16 of
        // earlier builds, faster at every W1 size and at 1024³ (tools/gen_matmul_wide.py).
        false => Some(("matmul_wide_rows", 32, 32)),
        true if m <= 32 && m.is_multiple_of(4) => Some(("matmul_wide_ta_short", 32, 32)),
        true if m.is_multiple_of(8) => Some(("matmul_wide_ta", 64, 16)),
        true => None,
    }
}
