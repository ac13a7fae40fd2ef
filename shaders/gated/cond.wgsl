// The condition c of gated.wgsl and its gradient; COND says how it is added (1: one value per
// image and channel, 2: one per element). Prepended by src/kernels/gated.rs; twin: plain.wgsl.

override COND: u32 = 1u;

@group(0) @binding(1) var<storage, read> cond: array<f32>;
@group(0) @binding(4) var<storage, read_write> dcond: array<f32>;   // backward: ∂L/∂c, shaped as c

fn cond_at(i: u32) -> f32 { return cond[i]; }
fn write_dcond(i: u32, v: f32) { dcond[i] = v; }
