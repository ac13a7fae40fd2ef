// Row-wise softmax and log-softmax over the last axis, from the per-row statistics that
// reduce.wgsl computes. Launcher: src/kernels/softmax.rs; CPU twin and tests: kernels-tests/softmax.rs.
//
// softmax(v) = exp((v − m) − log_sum) with (m, log_sum) = (max, log Σ exp(v − m)) of the row.
// v − m is exact for rows of huge values (1e4), where subtracting one log-sum-exp would lose
// its ulp (≈ 1e-3 at 1e4) in every output. A row of −inf gives NaN (0/0), as in PyTorch.

struct Params {
    rows: u32,
    cols: u32,
    pieces: u32,  // pieces per row: an invocation writes at most `piece` elements
    piece: u32,   // 4,096: lavapipe ends an invocation's loops after 65,535 iterations
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;  // [rows, 2]: m, log_sum
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// 0 softmax, 1 log-softmax.
override LOG: u32 = 0u;

const WG: u32 = 64u;

// One invocation per piece of a row: the row index is divided out once, not per element
// (integer division is emulated lane by lane on a CPU).
@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    // Linear workgroup id: grids above 65,535 workgroups are folded into y (and z).
    let g = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    let row = g / p.pieces;
    if row >= p.rows {
        return;
    }
    let m = stats[2u * row];
    let log_sum = stats[2u * row + 1u];
    let begin = row * p.cols + (g % p.pieces) * p.piece;
    let end = min(begin + p.piece, (row + 1u) * p.cols);
    for (var i = begin; i < end; i++) {
        let z = (x[i] - m) - log_sum;
        out[i] = select(exp(z), z, LOG == 1u);
    }
}
