// No condition for gated.wgsl: nothing is added and no condition buffer is bound.
// Prepended by src/kernels/gated.rs; twin: cond.wgsl.

const COND: u32 = 0u;

fn cond_at(i: u32) -> f32 { return 0.0; }
fn write_dcond(i: u32, v: f32) {}
