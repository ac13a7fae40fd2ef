// Lane type V = vec4<f32> of the row kernels (rows a multiple of 4 long) and of batchnorm.wgsl:
// on lavapipe a storage load is a loop over the SIMD lanes whatever its width, so one vec4 load
// costs about what one f32 load does. Prepended by src/kernels/{rows,batchnorm}.rs; twin:
// lanes_f32.wgsl.

alias V = vec4<f32>;
alias VU = vec4<u32>;
alias VB = vec4<bool>;
const LANES: u32 = 4u;

fn total(v: V) -> f32 { return (v.x + v.y) + (v.z + v.w); }
fn vmax(v: V) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
// Element `k` (0..3) of v.
fn pick(v: V, k: u32) -> f32 { return v[k]; }
// 1 where the element of V unit `e` of a row is element `k` of that row: a one-hot row.
fn hot(e: u32, k: u32) -> V {
    return select(V(0.0), V(1.0), vec4<u32>(4u * e) + vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(k));
}
// Offset of each lane's element within its V unit.
fn lane_offsets() -> VU { return vec4<u32>(0u, 1u, 2u, 3u); }
