// Lane type V = f32 of the row kernels (kl.wgsl, losses.wgsl) and of batchnorm.wgsl: one element
// per load, any length. Prepended by src/kernels/{rows,batchnorm}.rs; twin: lanes_vec4.wgsl.

alias V = f32;
alias VU = u32;
alias VB = bool;
const LANES: u32 = 1u;

fn total(v: V) -> f32 { return v; }
fn vmax(v: V) -> f32 { return v; }
// Element `k` of v (always v itself here).
fn pick(v: V, k: u32) -> f32 { return v; }
// 1 where the element of V unit `e` of a row is element `k` of that row: a one-hot row.
fn hot(e: u32, k: u32) -> V { return select(0.0, 1.0, e == k); }
// Offset of each lane's element within its V unit.
fn lane_offsets() -> VU { return 0u; }
