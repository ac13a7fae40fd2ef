// Subgroup matmul kernels, compiled appended to matmul.wgsl (its Params, bindings, overrides and
// store_row): `matmul_sg` (any shape) and `matmul_sg_v4` (M, N, K multiples of 4).
// Tests: kernels-tests/matmul_subgroup.rs; bench: `cargo run --release --example bench -- kernels`.
//
// Why this shape of kernel (measured on llvmpipe 22.3 / LLVM 15, see PERF-NOTES.md):
// * A workgroup runs on one CPU thread and its invocations are the 8 SIMD lanes, so workgroup_size(8) = one vector.
// * Every storage-buffer load is a per-lane loop of scalar loads (tens of cycles) even when all lanes read the same
//   address: llvmpipe only scalarises loads whose address is a compile-time/push constant. So no lane
//   may load an address another lane also loads. Each lane loads a *different* element of A and
//   subgroupBroadcast (constant lane index = one register shuffle) hands it to all lanes.
// * A vec4 load costs one per-lane loop for 4 values, hence `matmul_sg_v4` reads vec4 views of a/b
//   (1.5-1.8x faster); it needs M, N, K % 4 == 0 so every vec4 is aligned.
// * Tile: 8 rows x 32 columns per workgroup; lane l owns columns 4l..4l+3 of the tile as a vec4
//   accumulator per row (8 vec4 = 32 ymm registers). Per 4 k-steps: 1 A + 4 B vec4 loads,
//   32 broadcasts, 128 FMAs. Bigger tiles spill; smaller ones load more per FMA.
// * No early exit before the loop except the uniform wid >= tiles test; edge tiles clamp indices
//   and only the final store is masked. Override constants fold away, so the flags cost nothing.
// Requires wgpu::Features::SUBGROUP (subgroup size 8 on lavapipe; any size >= 8 works).
// Dispatch: T = ceil(M/8) * ceil(N/32) workgroups, tiles_n = ceil(N/32), as (min(T,65535), ceil(T/x), 1).

// Aligned vec4 views of the same buffers, used only by matmul_sg_v4.
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;

// Any shape. Per k: lane l loads A[m0+l, k] (broadcast to all lanes 8 times) and its 4 B values.
@compute @workgroup_size(8)
fn matmul_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lane: u32) {
    let wid = wg.x + wg.y * nwg.x;
    if (wid >= params.tiles) { return; }  // uniform per workgroup
    let M = params.m; let K = params.k;
    let m0 = (wid / params.tiles_n) * 8u;
    let col = (wid % params.tiles_n) * 32u + 4u * lane;
    let s = strides();
    let ab = min(m0 + lane, M - 1u) * s.x;
    let cols = b_columns(col, s.w);
    var acc0 = vec4(0.0); var acc1 = vec4(0.0); var acc2 = vec4(0.0); var acc3 = vec4(0.0); var acc4 = vec4(0.0); var acc5 = vec4(0.0); var acc6 = vec4(0.0); var acc7 = vec4(0.0);
    for (var k = 0u; k < K; k++) {
        let al = a[ab + k * s.y];
        let bv = load_b(k * s.z, cols);
        acc0 = fma(vec4(subgroupBroadcast(al, 0u)), bv, acc0);
        acc1 = fma(vec4(subgroupBroadcast(al, 1u)), bv, acc1);
        acc2 = fma(vec4(subgroupBroadcast(al, 2u)), bv, acc2);
        acc3 = fma(vec4(subgroupBroadcast(al, 3u)), bv, acc3);
        acc4 = fma(vec4(subgroupBroadcast(al, 4u)), bv, acc4);
        acc5 = fma(vec4(subgroupBroadcast(al, 5u)), bv, acc5);
        acc6 = fma(vec4(subgroupBroadcast(al, 6u)), bv, acc6);
        acc7 = fma(vec4(subgroupBroadcast(al, 7u)), bv, acc7);
    }
    store_row(m0 + 0u, col, acc0);
    store_row(m0 + 1u, col, acc1);
    store_row(m0 + 2u, col, acc2);
    store_row(m0 + 3u, col, acc3);
    store_row(m0 + 4u, col, acc4);
    store_row(m0 + 5u, col, acc5);
    store_row(m0 + 6u, col, acc6);
    store_row(m0 + 7u, col, acc7);
}

// M, N, K multiples of 4 (all W1 shapes). Same tile; loads are vec4 (4 k-steps per A load).
// !TRANS_A: lane l loads A[m0+l, k..k+3]; value (i, k+q) = lane i's component q.
//  TRANS_A: lane l loads A[k + l/2, m0+4(l%2) .. +3]; value (i, k+q) = lane 2q+i/4's component i%4.
// !TRANS_B: 4 loads B[k+q, cols]; TRANS_B: 4 loads B[col+j, k..k+3], transposed in registers (free in SoA).
@compute @workgroup_size(8)
fn matmul_sg_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lane: u32) {
    let wid = wg.x + wg.y * nwg.x;
    if (wid >= params.tiles) { return; }
    let M4 = params.m / 4u; let N4 = params.n / 4u; let K4 = params.k / 4u;
    let m0 = (wid / params.tiles_n) * 8u;
    let n0 = (wid % params.tiles_n) * 32u;
    let cb = min(n0 / 4u + lane, N4 - 1u);                      // lane's column block (vec4 index)
    let a_n = min(m0 + lane, params.m - 1u) * K4;               // !TRANS_A row start
    let a_t = (lane / 2u) * M4 + min(m0 / 4u + (lane & 1u), M4 - 1u); // TRANS_A
    let a_base = select(a_n, a_t, TRANS_A);
    let a_step = select(1u, 4u * M4, TRANS_A);
    var acc0 = vec4(0.0); var acc1 = vec4(0.0); var acc2 = vec4(0.0); var acc3 = vec4(0.0); var acc4 = vec4(0.0); var acc5 = vec4(0.0); var acc6 = vec4(0.0); var acc7 = vec4(0.0);
    for (var kk = 0u; kk < K4; kk++) {
        let al = a4[a_base + kk * a_step];
        var bq: array<vec4<f32>, 4>;  // bq[q] = B[4kk+q, lane's 4 columns]; constant indices only
        if (TRANS_B) {
            let t0 = b4[(4u * cb) * K4 + kk]; let t1 = b4[(4u * cb + 1u) * K4 + kk];
            let t2 = b4[(4u * cb + 2u) * K4 + kk]; let t3 = b4[(4u * cb + 3u) * K4 + kk];
            bq[0] = vec4(t0.x, t1.x, t2.x, t3.x); bq[1] = vec4(t0.y, t1.y, t2.y, t3.y);
            bq[2] = vec4(t0.z, t1.z, t2.z, t3.z); bq[3] = vec4(t0.w, t1.w, t2.w, t3.w);
        } else {
            let r = 4u * kk * N4 + cb;
            bq[0] = b4[r]; bq[1] = b4[r + N4]; bq[2] = b4[r + 2u * N4]; bq[3] = b4[r + 3u * N4];
        }
        acc0 = fma(vec4(select(subgroupBroadcast(al.x, 0u), subgroupBroadcast(al.x, 0u), TRANS_A)), bq[0], acc0);
        acc1 = fma(vec4(select(subgroupBroadcast(al.x, 1u), subgroupBroadcast(al.y, 0u), TRANS_A)), bq[0], acc1);
        acc2 = fma(vec4(select(subgroupBroadcast(al.x, 2u), subgroupBroadcast(al.z, 0u), TRANS_A)), bq[0], acc2);
        acc3 = fma(vec4(select(subgroupBroadcast(al.x, 3u), subgroupBroadcast(al.w, 0u), TRANS_A)), bq[0], acc3);
        acc4 = fma(vec4(select(subgroupBroadcast(al.x, 4u), subgroupBroadcast(al.x, 1u), TRANS_A)), bq[0], acc4);
        acc5 = fma(vec4(select(subgroupBroadcast(al.x, 5u), subgroupBroadcast(al.y, 1u), TRANS_A)), bq[0], acc5);
        acc6 = fma(vec4(select(subgroupBroadcast(al.x, 6u), subgroupBroadcast(al.z, 1u), TRANS_A)), bq[0], acc6);
        acc7 = fma(vec4(select(subgroupBroadcast(al.x, 7u), subgroupBroadcast(al.w, 1u), TRANS_A)), bq[0], acc7);
        acc0 = fma(vec4(select(subgroupBroadcast(al.y, 0u), subgroupBroadcast(al.x, 2u), TRANS_A)), bq[1], acc0);
        acc1 = fma(vec4(select(subgroupBroadcast(al.y, 1u), subgroupBroadcast(al.y, 2u), TRANS_A)), bq[1], acc1);
        acc2 = fma(vec4(select(subgroupBroadcast(al.y, 2u), subgroupBroadcast(al.z, 2u), TRANS_A)), bq[1], acc2);
        acc3 = fma(vec4(select(subgroupBroadcast(al.y, 3u), subgroupBroadcast(al.w, 2u), TRANS_A)), bq[1], acc3);
        acc4 = fma(vec4(select(subgroupBroadcast(al.y, 4u), subgroupBroadcast(al.x, 3u), TRANS_A)), bq[1], acc4);
        acc5 = fma(vec4(select(subgroupBroadcast(al.y, 5u), subgroupBroadcast(al.y, 3u), TRANS_A)), bq[1], acc5);
        acc6 = fma(vec4(select(subgroupBroadcast(al.y, 6u), subgroupBroadcast(al.z, 3u), TRANS_A)), bq[1], acc6);
        acc7 = fma(vec4(select(subgroupBroadcast(al.y, 7u), subgroupBroadcast(al.w, 3u), TRANS_A)), bq[1], acc7);
        acc0 = fma(vec4(select(subgroupBroadcast(al.z, 0u), subgroupBroadcast(al.x, 4u), TRANS_A)), bq[2], acc0);
        acc1 = fma(vec4(select(subgroupBroadcast(al.z, 1u), subgroupBroadcast(al.y, 4u), TRANS_A)), bq[2], acc1);
        acc2 = fma(vec4(select(subgroupBroadcast(al.z, 2u), subgroupBroadcast(al.z, 4u), TRANS_A)), bq[2], acc2);
        acc3 = fma(vec4(select(subgroupBroadcast(al.z, 3u), subgroupBroadcast(al.w, 4u), TRANS_A)), bq[2], acc3);
        acc4 = fma(vec4(select(subgroupBroadcast(al.z, 4u), subgroupBroadcast(al.x, 5u), TRANS_A)), bq[2], acc4);
        acc5 = fma(vec4(select(subgroupBroadcast(al.z, 5u), subgroupBroadcast(al.y, 5u), TRANS_A)), bq[2], acc5);
        acc6 = fma(vec4(select(subgroupBroadcast(al.z, 6u), subgroupBroadcast(al.z, 5u), TRANS_A)), bq[2], acc6);
        acc7 = fma(vec4(select(subgroupBroadcast(al.z, 7u), subgroupBroadcast(al.w, 5u), TRANS_A)), bq[2], acc7);
        acc0 = fma(vec4(select(subgroupBroadcast(al.w, 0u), subgroupBroadcast(al.x, 6u), TRANS_A)), bq[3], acc0);
        acc1 = fma(vec4(select(subgroupBroadcast(al.w, 1u), subgroupBroadcast(al.y, 6u), TRANS_A)), bq[3], acc1);
        acc2 = fma(vec4(select(subgroupBroadcast(al.w, 2u), subgroupBroadcast(al.z, 6u), TRANS_A)), bq[3], acc2);
        acc3 = fma(vec4(select(subgroupBroadcast(al.w, 3u), subgroupBroadcast(al.w, 6u), TRANS_A)), bq[3], acc3);
        acc4 = fma(vec4(select(subgroupBroadcast(al.w, 4u), subgroupBroadcast(al.x, 7u), TRANS_A)), bq[3], acc4);
        acc5 = fma(vec4(select(subgroupBroadcast(al.w, 5u), subgroupBroadcast(al.y, 7u), TRANS_A)), bq[3], acc5);
        acc6 = fma(vec4(select(subgroupBroadcast(al.w, 6u), subgroupBroadcast(al.z, 7u), TRANS_A)), bq[3], acc6);
        acc7 = fma(vec4(select(subgroupBroadcast(al.w, 7u), subgroupBroadcast(al.w, 7u), TRANS_A)), bq[3], acc7);
    }
    store_row(m0 + 0u, n0 + 4u * lane, acc0);
    store_row(m0 + 1u, n0 + 4u * lane, acc1);
    store_row(m0 + 2u, n0 + 4u * lane, acc2);
    store_row(m0 + 3u, n0 + 4u * lane, acc3);
    store_row(m0 + 4u, n0 + 4u * lane, acc4);
    store_row(m0 + 5u, n0 + 4u * lane, acc5);
    store_row(m0 + 6u, n0 + 4u * lane, acc6);
    store_row(m0 + 7u, n0 + 4u * lane, acc7);
}
