//! Launcher for `shaders/peak.wgsl`: the register-resident FMA loop whose GFLOP/s is the
//! device peak every kernel is compared with. Test: `kernels-tests/peak.rs`; bench: `bench -- kernels`.

use crate::engine::{Bind, DType, Engine, Error, Grid, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("peak", "peak.wgsl");

/// Invocations per workgroup (the shader's `@workgroup_size`).
const WG: u32 = 64;
/// FLOPs per invocation and loop iteration: 12 chains × 4 unrolled FMAs × 2.
const FLOPS_PER_ITER: f64 = 96.0;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    iters: u32,
    _pad: [u32; 3],
}

/// Outputs (one per invocation) written by `workgroups` workgroups.
pub fn outputs(workgroups: u32) -> usize {
    (workgroups * WG) as usize
}

/// FLOPs executed by one `fma_peak` dispatch.
pub fn flops(workgroups: u32, iters: u32) -> f64 {
    FLOPS_PER_ITER * iters as f64 * outputs(workgroups) as f64
}

/// A size that keeps every core busy for tens of milliseconds: (workgroups, iterations).
pub fn default_size(_engine: &Engine) -> (u32, u32) {
    (256, 20_000)
}

/// Runs the FMA loop: `out[i]` (one per invocation) receives the sum of its 12 chains.
pub fn fma_peak(out: &Tensor, workgroups: u32, iters: u32) -> Result<()> {
    out.expect_dtype("fma_peak", DType::F32)?;
    if out.numel() != outputs(workgroups) {
        return Err(Error::ShapeMismatch {
            op: "fma_peak",
            lhs: out.shape().to_vec(),
            rhs: vec![outputs(workgroups)],
        });
    }
    let params = Params {
        iters,
        _pad: [0; 3],
    };
    out.engine().dispatch(
        &SHADER,
        "fma_peak",
        &[],
        &[Bind::write("out", out)],
        bytemuck::bytes_of(&params),
        Grid::Dims([workgroups, 1, 1]),
    )
}
