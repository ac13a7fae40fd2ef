// Shared part of the row kernels (kl.wgsl, losses.wgsl): Params, bindings and the split of rows
// into pieces. Prepended (after a lanes_*.wgsl and a weight_*.wgsl, which defines `weight`) by
// src/kernels/rows.rs; tested with every combination.
//
// Tensors are [B, D] with rows = examples; a, b, c, d and the outputs are viewed in V units
// (D / LANES per row). Each entry point binds only what it uses: inputs a..d (labels, stats),
// the per-row weights g (weight_row.wgsl), outputs o0..o3, per-row sums; the params uniform.

struct Params {
    rows: u32,     // B
    cols: u32,     // V units per row
    pieces: u32,   // invocations per row
    piece: u32,    // V units per invocation at most: lavapipe ends an invocation's loops after
                   // 65,535 iterations, so the host keeps 3·piece well below that
    classes: u32,  // cross entropy: C, the bound of a valid label
    _pad0: u32,
    scale: f32,    // backward passes: the weight of every row (times g[row] with weight_row.wgsl)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<V>;
@group(0) @binding(1) var<storage, read> b: array<V>;
@group(0) @binding(2) var<storage, read> c: array<V>;
@group(0) @binding(3) var<storage, read> d: array<V>;
@group(0) @binding(4) var<storage, read> labels: array<u32>;  // [B]
@group(0) @binding(5) var<storage, read> stats: array<f32>;   // [B, 2]: max, log Σ exp(v − max)
@group(0) @binding(7) var<storage, read_write> o0: array<V>;
@group(0) @binding(8) var<storage, read_write> o1: array<V>;
@group(0) @binding(9) var<storage, read_write> o2: array<V>;
@group(0) @binding(10) var<storage, read_write> o3: array<V>;
@group(0) @binding(11) var<storage, read_write> sums: array<f32>;  // [B, pieces]
@group(0) @binding(12) var<uniform> p: Params;

// Eight of lavapipe's 8-lane SIMD batches; one or two waves on a GPU.
const WG: u32 = 64u;

struct Ids {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
}

// One invocation's piece of a row: V units begin..end; id indexes sums ([B, pieces]).
// row ≥ p.rows past the last piece (the folded grid's tail).
struct Span {
    row: u32,
    id: u32,
    begin: u32,
    end: u32,
}

fn span(ids: Ids) -> Span {
    // Linear workgroup id: grids above 65,535 workgroups are folded into y (and z).
    let id = (ids.wg.x + ids.wg.y * ids.nwg.x + ids.wg.z * ids.nwg.x * ids.nwg.y) * WG + ids.lid;
    // One division per invocation, not per element (integer division is emulated per lane).
    let row = id / p.pieces;
    let begin = row * p.cols + (id - row * p.pieces) * p.piece;
    return Span(row, id, begin, min(begin + p.piece, (row + 1u) * p.cols));
}
