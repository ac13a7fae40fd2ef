//! Host launchers, one module per WGSL kernel family in `shaders/` (same name); each checks
//! shapes, computes the grid, writes the params uniform and records the dispatch.

pub mod elementwise;
pub mod matmul;
pub mod matmul_subgroup;
pub mod peak;

use crate::engine::Shader;

/// Every kernel family's shader as compiled (for validation and tooling).
pub const SHADERS: &[Shader] = &[
    elementwise::SHADER,
    matmul::SHADER,
    matmul_subgroup::SHADER,
    peak::SHADER,
];
