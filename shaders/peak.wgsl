// FMA peak: a register-resident loop of independent FMA chains, the reference every kernel's GFLOP/s is divided by.
// Test/bench: `cargo run --release --example bench -- kernels` (reports it); kernels-tests checks `out` against the CPU recurrence below.
//
// FLOPs = 2 * 48 * params.iters per invocation (12 chains x 4 unrolled steps, 1 FMA = 2 FLOP; the final sum is
// not counted). On lavapipe an invocation is one lane of a 256-bit register, so 12 chains = 12 ymm registers,
// enough to cover the 4-cycle FMA latency on 2 FMA pipes; the 4x unroll amortises llvmpipe's per-iteration
// loop-mask bookkeeping (16 chains without unroll reached only ~55 % of this). Dispatch >= 64 workgroups.
// Output, reproducible on the CPU in f32: x_j = f32(gid & 255) / 256 + j / 16 for j = 0..11, then 4 * iters times
// x_j = fma(x_j, 1 - 2^-10, 2^-10) (fixed point 1.0, all constants exact); out[gid] = x_0 + x_1 + ... + x_11 (left to right).

struct PeakParams { iters: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: PeakParams;

const MUL: f32 = 0.9990234375; // 1 - 2^-10
const ADD: f32 = 0.0009765625; // 2^-10

@compute @workgroup_size(64)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = f32(gid.x & 255u) * 0.00390625;
    var x0 = s + 0.0000;
    var x1 = s + 0.0625;
    var x2 = s + 0.1250;
    var x3 = s + 0.1875;
    var x4 = s + 0.2500;
    var x5 = s + 0.3125;
    var x6 = s + 0.3750;
    var x7 = s + 0.4375;
    var x8 = s + 0.5000;
    var x9 = s + 0.5625;
    var x10 = s + 0.6250;
    var x11 = s + 0.6875;
    for (var i = 0u; i < params.iters; i++) {
        x0 = fma(x0, MUL, ADD); x1 = fma(x1, MUL, ADD); x2 = fma(x2, MUL, ADD); x3 = fma(x3, MUL, ADD); x4 = fma(x4, MUL, ADD); x5 = fma(x5, MUL, ADD);
        x6 = fma(x6, MUL, ADD); x7 = fma(x7, MUL, ADD); x8 = fma(x8, MUL, ADD); x9 = fma(x9, MUL, ADD); x10 = fma(x10, MUL, ADD); x11 = fma(x11, MUL, ADD);
        x0 = fma(x0, MUL, ADD); x1 = fma(x1, MUL, ADD); x2 = fma(x2, MUL, ADD); x3 = fma(x3, MUL, ADD); x4 = fma(x4, MUL, ADD); x5 = fma(x5, MUL, ADD);
        x6 = fma(x6, MUL, ADD); x7 = fma(x7, MUL, ADD); x8 = fma(x8, MUL, ADD); x9 = fma(x9, MUL, ADD); x10 = fma(x10, MUL, ADD); x11 = fma(x11, MUL, ADD);
        x0 = fma(x0, MUL, ADD); x1 = fma(x1, MUL, ADD); x2 = fma(x2, MUL, ADD); x3 = fma(x3, MUL, ADD); x4 = fma(x4, MUL, ADD); x5 = fma(x5, MUL, ADD);
        x6 = fma(x6, MUL, ADD); x7 = fma(x7, MUL, ADD); x8 = fma(x8, MUL, ADD); x9 = fma(x9, MUL, ADD); x10 = fma(x10, MUL, ADD); x11 = fma(x11, MUL, ADD);
        x0 = fma(x0, MUL, ADD); x1 = fma(x1, MUL, ADD); x2 = fma(x2, MUL, ADD); x3 = fma(x3, MUL, ADD); x4 = fma(x4, MUL, ADD); x5 = fma(x5, MUL, ADD);
        x6 = fma(x6, MUL, ADD); x7 = fma(x7, MUL, ADD); x8 = fma(x8, MUL, ADD); x9 = fma(x9, MUL, ADD); x10 = fma(x10, MUL, ADD); x11 = fma(x11, MUL, ADD);
    }
    out[gid.x] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11;
}
