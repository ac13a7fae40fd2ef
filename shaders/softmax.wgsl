// Row-wise softmax and log-softmax over the last axis, from the per-row statistics that
// reduce.wgsl computes, and the backward passes of log-softmax and of log-sum-exp.
// Launcher: src/kernels/softmax.rs; CPU twin and tests: kernels-tests/softmax.rs.
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

@group(0) @binding(0) var<storage, read> x: array<f32>;       // x, or y = log_softmax(x)
@group(0) @binding(1) var<storage, read> stats: array<f32>;   // [rows, 2]: m, log_sum
@group(0) @binding(2) var<storage, read> dy: array<f32>;      // upstream gradient: like x
                                                              // (log-softmax), [rows] (log-sum-exp)
@group(0) @binding(3) var<storage, read> dy_sums: array<f32>; // [rows]: Σ dy over each row
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

// 0 softmax, 1 log-softmax.
override LOG: u32 = 0u;

const WG: u32 = 64u;
// An inline row sum adds BLOCK elements into a block sum before adding that to its total (as
// reduce.wgsl does): chains of ≤ 32 + cols/32 roundings instead of cols.
const BLOCK: u32 = 32u;

// One invocation's piece of a row: elements begin..end; row ≥ p.rows past the last piece.
struct Piece {
    row: u32,
    begin: u32,
    end: u32,
}

// One invocation per piece of a row: the row index is divided out once, not per element
// (integer division is emulated lane by lane on a CPU).
fn piece_of(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Piece {
    // Linear workgroup id: grids above 65,535 workgroups are folded into y (and z).
    let g = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    let row = g / p.pieces;
    let begin = row * p.cols + (g % p.pieces) * p.piece;
    return Piece(row, begin, min(begin + p.piece, (row + 1u) * p.cols));
}

@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let s = piece_of(wg, nwg, lid);
    if s.row >= p.rows {
        return;
    }
    let m = stats[2u * s.row];
    let log_sum = stats[2u * s.row + 1u];
    for (var i = s.begin; i < s.end; i++) {
        let z = (x[i] - m) - log_sum;
        out[i] = select(exp(z), z, LOG == 1u);
    }
}

// dx = dy − exp(y)·total over a piece (x holds y).
fn log_softmax_dx(s: Piece, total: f32) {
    for (var i = s.begin; i < s.end; i++) {
        out[i] = dy[i] - exp(x[i]) * total;
    }
}

// Backward of y = log_softmax(x): dx = dy − softmax(x)·Σ_row dy, softmax(x) = exp(y) (x holds
// y). One pass per row (one piece: the launcher sends rows of ≤ 4,096 here): the row's Σ dy
// in block sums, then dx; 2·4,096 + 128 loop iterations at most.
@compute @workgroup_size(WG)
fn log_softmax_backward(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let s = piece_of(wg, nwg, lid);
    if s.row >= p.rows {
        return;
    }
    var total = 0.0;
    for (var j0 = s.begin; j0 < s.end; j0 += BLOCK) {
        var block = 0.0;
        let j1 = min(s.end, j0 + BLOCK);
        for (var j = j0; j < j1; j++) {
            block += dy[j];
        }
        total += block;
    }
    log_softmax_dx(s, total);
}

// The same for rows longer than one piece: Σ_row dy comes from reduce.wgsl (dy_sums).
@compute @workgroup_size(WG)
fn log_softmax_backward_summed(@builtin(workgroup_id) wg: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let s = piece_of(wg, nwg, lid);
    if s.row >= p.rows {
        return;
    }
    let total = dy_sums[s.row];
    log_softmax_dx(s, total);
}

// Backward of the row-wise log-sum-exp: dx = dy[row]·softmax(x), from the row statistics as in
// normalize (not exp(x − lse): lse rounds at its ulp, 1e-3 at 1e4). A row of −inf (lse −inf)
// gives NaN: −inf − (−inf).
@compute @workgroup_size(WG)
fn logsumexp_backward(@builtin(workgroup_id) wg: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let s = piece_of(wg, nwg, lid);
    if s.row >= p.rows {
        return;
    }
    let m = stats[2u * s.row];
    let log_sum = stats[2u * s.row + 1u];
    let w = dy[s.row];
    for (var i = s.begin; i < s.end; i++) {
        out[i] = w * exp((x[i] - m) - log_sum);
    }
}
