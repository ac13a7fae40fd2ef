// Matrix multiply C[M,N] = op(A)·op(B) (+ bias[n], ReLU, += C): shared declarations, the masked
// row store, and `matmul`, the portable kernel for devices without subgroup operations.
// Tests: kernels-tests/matmul.rs (CPU twin); bench: `cargo run --release --example bench -- kernels`.
//
// Compiled after shaders/bias/bias.wgsl or shaders/bias/no_bias.wgsl (HAS_BIAS, bias_at and,
// with a bias, its binding). matmul_subgroup.wgsl is appended to this file to make the fast module (see there for the
// lavapipe measurements behind the tiling). Both use the same tile, grid and Params:
// 8 rows x 32 columns per workgroup of 8 invocations; lane l owns columns 4l..4l+3 of the tile
// as one vec4 accumulator per row. Dispatch: T = ceil(M/8) * ceil(N/32) workgroups,
// tiles_n = ceil(N/32), folded as (min(T, 65535), ceil(T/x), 1); wid >= T does nothing.
// Edge tiles clamp their load indices and mask only the final store.

struct Params { m: u32, n: u32, k: u32, tiles_n: u32, tiles: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override TRANS_A: bool = false;   // A stored [K,M]
override TRANS_B: bool = false;   // B stored [N,K]
override RELU: bool = false;      // max(0, .) after the bias
override ACCUMULATE: bool = false; // C += result (gradient accumulation)

// Bias, ReLU, accumulate and the masked store of one row of a lane's 4 columns.
fn store_row(row: u32, col: u32, v_in: vec4<f32>) {
    let M = params.m; let N = params.n;
    if (row >= M) { return; }
    var v = v_in;
    if (HAS_BIAS) { v += vec4(bias_at(min(col, N - 1u)), bias_at(min(col + 1u, N - 1u)), bias_at(min(col + 2u, N - 1u)), bias_at(min(col + 3u, N - 1u))); }
    if (RELU) { v = max(v, vec4(0.0)); }
    for (var j = 0u; j < 4u; j++) {
        let cj = col + j;
        if (cj < N) {
            let o = row * N + cj;
            var x = v[j];
            if (ACCUMULATE) { x += c[o]; }
            c[o] = x;
        }
    }
}

// Operand strides: element (r, k) of op(A) is a[r * s.x + k * s.y], element (k, n) of op(B) is
// b[k * s.z + n * s.w].
fn strides() -> vec4<u32> {
    let M = params.m; let N = params.n; let K = params.k;
    return vec4(select(K, 1u, TRANS_A), select(1u, M, TRANS_A), select(N, 1u, TRANS_B), select(1u, K, TRANS_B));
}

// Offsets in b of columns col..col+3 (clamped to the last column, so edge tiles load safely).
fn b_columns(col: u32, sb: u32) -> vec4<u32> {
    let last = params.n - 1u;
    return vec4(min(col, last), min(col + 1u, last), min(col + 2u, last), min(col + 3u, last)) * sb;
}

// This lane's 4 values of op(B)'s row k (`kk` = k * s.z).
fn load_b(kk: u32, cols: vec4<u32>) -> vec4<f32> {
    return vec4(b[kk + cols.x], b[kk + cols.y], b[kk + cols.z], b[kk + cols.w]);
}

// Any shape, no subgroups: every lane reads the 8 A values of the tile's rows (the same
// addresses across lanes, which real GPUs serve as broadcasts) and its own 4 B values.
@compute @workgroup_size(8)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lane: u32) {
    let wid = wg.x + wg.y * nwg.x;
    if (wid >= params.tiles) { return; }  // uniform per workgroup
    let M = params.m; let K = params.k;
    let m0 = (wid / params.tiles_n) * 8u;
    let col = (wid % params.tiles_n) * 32u + 4u * lane;
    let s = strides();
    let r0 = min(m0, M - 1u) * s.x; let r1 = min(m0 + 1u, M - 1u) * s.x;
    let r2 = min(m0 + 2u, M - 1u) * s.x; let r3 = min(m0 + 3u, M - 1u) * s.x;
    let r4 = min(m0 + 4u, M - 1u) * s.x; let r5 = min(m0 + 5u, M - 1u) * s.x;
    let r6 = min(m0 + 6u, M - 1u) * s.x; let r7 = min(m0 + 7u, M - 1u) * s.x;
    let cols = b_columns(col, s.w);
    var acc0 = vec4(0.0); var acc1 = vec4(0.0); var acc2 = vec4(0.0); var acc3 = vec4(0.0);
    var acc4 = vec4(0.0); var acc5 = vec4(0.0); var acc6 = vec4(0.0); var acc7 = vec4(0.0);
    for (var k = 0u; k < K; k++) {
        let bv = load_b(k * s.z, cols);
        let ak = k * s.y;
        acc0 = fma(vec4(a[r0 + ak]), bv, acc0); acc1 = fma(vec4(a[r1 + ak]), bv, acc1);
        acc2 = fma(vec4(a[r2 + ak]), bv, acc2); acc3 = fma(vec4(a[r3 + ak]), bv, acc3);
        acc4 = fma(vec4(a[r4 + ak]), bv, acc4); acc5 = fma(vec4(a[r5 + ak]), bv, acc5);
        acc6 = fma(vec4(a[r6 + ak]), bv, acc6); acc7 = fma(vec4(a[r7 + ak]), bv, acc7);
    }
    store_row(m0 + 0u, col, acc0); store_row(m0 + 1u, col, acc1);
    store_row(m0 + 2u, col, acc2); store_row(m0 + 3u, col, acc3);
    store_row(m0 + 4u, col, acc4); store_row(m0 + 5u, col, acc5);
    store_row(m0 + 6u, col, acc6); store_row(m0 + 7u, col, acc7);
}
