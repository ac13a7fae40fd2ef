//! Host launchers, one module per WGSL kernel family in `shaders/` (same name); each checks
//! shapes, computes the grid, writes the params uniform and records the dispatch.

pub mod adam;
pub mod batchnorm;
pub mod categorical;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod elementwise;
pub mod gated;
pub mod kl;
pub mod layout;
pub mod losses;
pub mod masked_conv;
pub mod matmul;
pub mod matmul_subgroup;
pub mod matmul_wide;
pub mod peak;
pub mod random;
pub mod reduce;
mod rows;
pub mod softmax;
pub mod vq;

use crate::engine::{Grid, Result, Shader, Tensor};

/// Every kernel family's shader as compiled (for validation and tooling).
pub const SHADERS: &[Shader] = &[
    adam::SHADER,
    batchnorm::SHADERS[0],
    batchnorm::SHADERS[1],
    categorical::SHADER,
    conv2d::SHADER,
    elementwise::SHADER,
    gated::SHADER,
    kl::SHADERS[0],
    kl::SHADERS[1],
    layout::SHADER,
    losses::SHADERS[0],
    losses::SHADERS[1],
    masked_conv::SHADER,
    matmul::SHADER,
    matmul_subgroup::SHADER,
    matmul_wide::SHADER,
    peak::SHADER,
    random::SHADER,
    reduce::SHADER,
    softmax::SHADER,
    vq::SHADER,
    vq::SEARCH[0],
    vq::SEARCH[1],
];

/// Records `entry` over `workgroups` workgroups (folded by the engine past 65,535), binding
/// `tensors` in binding order and `params` as the uniform.
pub(crate) fn launch<P: bytemuck::Pod>(
    shader: &Shader,
    entry: &'static str,
    constants: &[(&'static str, f64)],
    tensors: &[&Tensor],
    params: &P,
    workgroups: u32,
) -> Result<()> {
    let bytes = bytemuck::bytes_of(params);
    let grid = Grid::Linear(workgroups);
    tensors[0]
        .engine()
        .dispatch(shader, entry, constants, tensors, bytes, grid)
}
