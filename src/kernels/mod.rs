//! Host launchers, one module per WGSL kernel family in `shaders/` (same name); each checks
//! shapes, computes the grid, writes the params uniform and records the dispatch.

pub mod adam;
pub mod batchnorm;
pub mod categorical;
pub mod conv2d;
pub mod conv2d_igemm;
pub mod conv_transpose2d;
pub mod elementwise;
pub mod gated;
pub mod gather;
pub mod kl;
pub mod layout;
pub mod losses;
pub mod masked_conv;
pub mod matmul;
pub mod matmul_subgroup;
pub mod matmul_wide;
pub mod mdn;
pub mod peak;
pub mod random;
pub mod reduce;
mod rows;
pub mod softmax;
pub mod vq;

use crate::engine::{Bind, Grid, Result, Shader};

/// Every kernel family's shader as compiled (for validation and tooling).
pub const SHADERS: &[Shader] = &[
    adam::SHADER,
    adam::WIDE_SHADER,
    batchnorm::SHADERS[0][0],
    batchnorm::SHADERS[0][1],
    batchnorm::SHADERS[1][0],
    batchnorm::SHADERS[1][1],
    batchnorm::SHADERS[2][0],
    batchnorm::SHADERS[2][1],
    categorical::SHADER,
    conv2d::SHADERS[0],
    conv2d::SHADERS[1],
    conv2d_igemm::SHADERS[0],
    conv2d_igemm::SHADERS[1],
    elementwise::SHADER,
    gated::SHADERS[0],
    gated::SHADERS[1],
    gather::SHADER,
    kl::SHADERS[0][0],
    kl::SHADERS[0][1],
    kl::SHADERS[1][0],
    kl::SHADERS[1][1],
    layout::SHADER,
    losses::SHADERS[0][0],
    losses::SHADERS[0][1],
    losses::SHADERS[1][0],
    losses::SHADERS[1][1],
    masked_conv::SHADER,
    matmul::SHADERS[0],
    matmul::SHADERS[1],
    matmul_subgroup::SHADERS[0],
    matmul_subgroup::SHADERS[1],
    matmul_wide::SHADERS[0],
    matmul_wide::SHADERS[1],
    mdn::SHADER,
    peak::SHADER,
    random::SHADER,
    reduce::SHADER,
    softmax::SHADER,
    vq::SHADERS[0],
    vq::SHADERS[1],
    vq::SEARCH[0],
    vq::SEARCH[1],
];

/// Records `entry` over `workgroups` workgroups (folded by the engine past 65,535), binding
/// each tensor of `tensors` to the WGSL variable it names and `params` as the uniform.
pub(crate) fn launch<P: bytemuck::Pod>(
    shader: &Shader,
    entry: &'static str,
    constants: &[(&'static str, f64)],
    tensors: &[Bind],
    params: &P,
    workgroups: u32,
) -> Result<()> {
    let bytes = bytemuck::bytes_of(params);
    let grid = Grid::Linear(workgroups);
    tensors[0]
        .tensor
        .engine()
        .dispatch(shader, entry, constants, tensors, bytes, grid)
}
