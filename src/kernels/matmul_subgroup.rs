//! The subgroup matmul module (`shaders/matmul_subgroup.wgsl` after `shaders/matmul.wgsl`)
//! and the choice of its entry points; driven by `matmul::matmul_into`. Tests: `kernels-tests/matmul_subgroup.rs`.

use crate::engine::{Engine, Shader, shader};

/// Without and with a bias row.
pub const SHADERS: [Shader; 2] = [
    shader!(
        "matmul_subgroup",
        "bias/no_bias.wgsl",
        "matmul.wgsl",
        "matmul_subgroup.wgsl"
    ),
    shader!(
        "matmul_subgroup_bias",
        "bias/bias.wgsl",
        "matmul.wgsl",
        "matmul_subgroup.wgsl"
    ),
];

/// Whether the subgroup kernels can run: they broadcast from lanes 0..7 of a workgroup of 8,
/// so subgroups must exist and hold at least 8 invocations.
pub fn usable(engine: &Engine) -> bool {
    engine.features().contains(wgpu::Features::SUBGROUP)
        && engine.adapter_info().subgroup_min_size >= 8
}

/// The entry point for an (M, K, N) product: the vec4 kernel reads aligned vec4s of A and B,
/// so it needs every side to be a multiple of 4.
pub fn entry(m: usize, k: usize, n: usize) -> &'static str {
    if m.is_multiple_of(4) && n.is_multiple_of(4) && k.is_multiple_of(4) {
        "matmul_sg_v4"
    } else {
        "matmul_sg"
    }
}
