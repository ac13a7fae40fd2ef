// Fused nearest-codebook search of the vq family: for rows z [N, D] and codes e [K, D], each row's
// nearest code and, in `vq_quantize`, z_q = e[code] and Σ_d (z − z_q)². Needs subgroups (>= 8).
// Compiled after shaders/vq/loads_wide.wgsl or loads_f32.wgsl (load_z, load_e, store_zq).
// Launcher: src/kernels/vq.rs; tests: kernels-tests/vq.rs; bench: `bench -- kernels`.
//
// Distance (what the CPU twin computes bit for bit): d(n, k) = fma(−2, z_n·e_k, ‖e_k‖²), ‖z_n‖²
// dropped (the same for every k); z·e and ‖e‖² are each one chain s = fma(a_d, b_d, s) over
// d = 0..D−1 from 0. WGSL lets a device round fma once or twice (lavapipe: twice, a·b then + c);
// the twin follows the device. Codes are scanned in order and a row's code changes only when
// strictly nearer: ties go to the lowest index.
//
// Tile (matmul_wide's rows kernel, see there for the lavapipe measurements): a workgroup of 8
// lanes owns 32 rows, lane l rows m0 + l + 8r (r < 4), and walks the whole codebook 16 codes at a
// time. Per 8 dimensions a lane loads its 4 rows' runs and two codes' runs (codes n0 + l and
// n0 + 8 + l), the codes' values are handed round with subgroupBroadcast (a register shuffle), and
// the 4 × 16 dot products stay in registers; each lane also sums its two codes' squares. After a
// tile the 16 distances update each row's running minimum in registers, so no [N, K] matrix is
// written or read. (64 rows × 16 codes per workgroup, twice the accumulators, measured 15 % slower.)
//
// A large codebook is searched in blocks of code tiles, one dispatch each (the launcher makes a
// block about 256 KiB): no invocation loops over more than a block, so K has no loop-limit bound,
// and the block can stay in a CPU core's L2 cache while the row tiles pass over it. Between blocks
// each row's running minimum waits in `best` and `indices`. Loop steps per invocation:
// tiles·(ceil(D/8) + 1) + 4·ceil(D/8), which the launcher keeps under lavapipe's 65,535.

struct Params {
    n: u32, k: u32, d: u32, d8: u32,
    row_tiles: u32,
    tile_begin: u32, tile_end: u32,  // this dispatch's code tiles
    first: u32,                      // 0: resume from best / indices
}

@group(0) @binding(2) var<storage, read_write> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> err: array<f32>;
@group(0) @binding(5) var<storage, read_write> best: array<f32>;  // running minimum between blocks
@group(0) @binding(6) var<uniform> p: Params;

// 8 consecutive floats of a row: floats 0, 2, 4, 6 in `lo`, 1, 3, 5, 7 in `hi`.
struct Eight { lo: vec4<f32>, hi: vec4<f32> }

// Dot products of a lane's rows r0..r3 with the tile's 16 codes; column q holds codes 4q..4q+3.
struct Acc { r0: mat4x4<f32>, r1: mat4x4<f32>, r2: mat4x4<f32>, r3: mat4x4<f32> }

// A row's running minimum: distance and code.
struct Best { v: f32, i: u32 }

// The tile's 16 codes' values at one dimension, in every lane: code j was loaded by lane j % 8,
// into u0 for j < 8 and u1 for j >= 8.
fn spread(u0: f32, u1: f32) -> mat4x4<f32> {
    return mat4x4<f32>(
        vec4(subgroupBroadcast(u0, 0u), subgroupBroadcast(u0, 1u), subgroupBroadcast(u0, 2u), subgroupBroadcast(u0, 3u)),
        vec4(subgroupBroadcast(u0, 4u), subgroupBroadcast(u0, 5u), subgroupBroadcast(u0, 6u), subgroupBroadcast(u0, 7u)),
        vec4(subgroupBroadcast(u1, 0u), subgroupBroadcast(u1, 1u), subgroupBroadcast(u1, 2u), subgroupBroadcast(u1, 3u)),
        vec4(subgroupBroadcast(u1, 4u), subgroupBroadcast(u1, 5u), subgroupBroadcast(u1, 6u), subgroupBroadcast(u1, 7u)));
}

fn fma16(x: f32, b: mat4x4<f32>, c: mat4x4<f32>) -> mat4x4<f32> {
    let v = vec4(x);
    return mat4x4<f32>(fma(v, b[0], c[0]), fma(v, b[1], c[1]), fma(v, b[2], c[2]), fma(v, b[3], c[3]));
}

// One dimension: `a` holds the 4 rows' values, u0 / u1 the lane's two codes'.
fn dim(acc: Acc, a: vec4<f32>, u0: f32, u1: f32) -> Acc {
    let b = spread(u0, u1);
    return Acc(fma16(a.x, b, acc.r0), fma16(a.y, b, acc.r1), fma16(a.z, b, acc.r2), fma16(a.w, b, acc.r3));
}

// The chain s = fma(v_d, v_d, s) continued over 8 dimensions in order.
fn squares(v: Eight, acc: f32) -> f32 {
    var s = fma(v.lo.x, v.lo.x, acc);
    s = fma(v.hi.x, v.hi.x, s); s = fma(v.lo.y, v.lo.y, s); s = fma(v.hi.y, v.hi.y, s);
    s = fma(v.lo.z, v.lo.z, s); s = fma(v.hi.z, v.hi.z, s); s = fma(v.lo.w, v.lo.w, s);
    return fma(v.hi.w, v.hi.w, s);
}

fn nearer(b: Best, d: f32, i: u32) -> Best {
    let take = d < b.v;
    return Best(select(b.v, d, take), select(b.i, i, take));
}

// A row's 16 distances of tile `n0` (dots, and the codes' squared norms `nm`) in code order. Codes
// past K were loaded as copies of code K − 1, which precedes them, so they never win.
fn update(b: Best, dots: mat4x4<f32>, nm: mat4x4<f32>, n0: u32) -> Best {
    var r = b;
    let d0 = fma(vec4(-2.0), dots[0], nm[0]); let d1 = fma(vec4(-2.0), dots[1], nm[1]);
    let d2 = fma(vec4(-2.0), dots[2], nm[2]); let d3 = fma(vec4(-2.0), dots[3], nm[3]);
    r = nearer(r, d0.x, n0); r = nearer(r, d0.y, n0 + 1u); r = nearer(r, d0.z, n0 + 2u); r = nearer(r, d0.w, n0 + 3u);
    r = nearer(r, d1.x, n0 + 4u); r = nearer(r, d1.y, n0 + 5u); r = nearer(r, d1.z, n0 + 6u); r = nearer(r, d1.w, n0 + 7u);
    r = nearer(r, d2.x, n0 + 8u); r = nearer(r, d2.y, n0 + 9u); r = nearer(r, d2.z, n0 + 10u); r = nearer(r, d2.w, n0 + 11u);
    r = nearer(r, d3.x, n0 + 12u); r = nearer(r, d3.y, n0 + 13u); r = nearer(r, d3.z, n0 + 14u); r = nearer(r, d3.w, n0 + 15u);
    return r;
}

// A row's minimum over the earlier blocks; +inf and code 0 before the first (a row of infinite
// distances takes code 0).
fn resume(row: u32) -> Best {
    if (p.first != 0u) { return Best(bitcast<f32>(0x7f800000u), 0u); }
    return Best(best[row], indices[row]);
}

// The nearest codes of rows m0 + lane + 8r, r < 4 (rows past N are clamped to the last row).
fn search(m0: u32, lane: u32) -> array<Best, 4> {
    let last = p.n - 1u;
    let row0 = min(m0 + lane, last); let row1 = min(m0 + 8u + lane, last);
    let row2 = min(m0 + 16u + lane, last); let row3 = min(m0 + 24u + lane, last);
    var b0 = resume(row0); var b1 = resume(row1); var b2 = resume(row2); var b3 = resume(row3);
    for (var t = p.tile_begin; t < p.tile_end; t++) {
        let n0 = 16u * t;
        let code0 = min(n0 + lane, p.k - 1u); let code1 = min(n0 + 8u + lane, p.k - 1u);
        var acc = Acc(mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>());
        var s0 = 0.0; var s1 = 0.0;
        for (var c = 0u; c < p.d8; c++) {
            let x0 = load_z(row0, c); let x1 = load_z(row1, c); let x2 = load_z(row2, c); let x3 = load_z(row3, c);
            let y0 = load_e(code0, c); let y1 = load_e(code1, c);
            // Column i: the 4 rows' values at dimension 8c + 2i (even) or 8c + 2i + 1 (odd).
            let ev = transpose(mat4x4<f32>(x0.lo, x1.lo, x2.lo, x3.lo));
            let od = transpose(mat4x4<f32>(x0.hi, x1.hi, x2.hi, x3.hi));
            acc = dim(acc, ev[0], y0.lo.x, y1.lo.x); acc = dim(acc, od[0], y0.hi.x, y1.hi.x);
            acc = dim(acc, ev[1], y0.lo.y, y1.lo.y); acc = dim(acc, od[1], y0.hi.y, y1.hi.y);
            acc = dim(acc, ev[2], y0.lo.z, y1.lo.z); acc = dim(acc, od[2], y0.hi.z, y1.hi.z);
            acc = dim(acc, ev[3], y0.lo.w, y1.lo.w); acc = dim(acc, od[3], y0.hi.w, y1.hi.w);
            s0 = squares(y0, s0); s1 = squares(y1, s1);
        }
        let nm = spread(s0, s1);
        b0 = update(b0, acc.r0, nm, n0); b1 = update(b1, acc.r1, nm, n0);
        b2 = update(b2, acc.r2, nm, n0); b3 = update(b3, acc.r3, nm, n0);
    }
    return array(b0, b1, b2, b3);
}

fn tile_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

fn keep(row: u32, b: Best) {
    if (row < p.n) { indices[row] = b.i; best[row] = b.v; }
}

// indices [N]: the nearest code of every row (with `best`, the running minimum of a block).
@compute @workgroup_size(8)
fn vq_nearest(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lane: u32) {
    let t = tile_of(wg, nwg);
    if (t >= p.row_tiles) { return; }  // uniform per workgroup
    let m0 = 32u * t;
    let b = search(m0, lane);
    keep(m0 + lane, b[0]); keep(m0 + 8u + lane, b[1]); keep(m0 + 16u + lane, b[2]); keep(m0 + 24u + lane, b[3]);
}

// Row `row`'s code, z_q row = e[code] and err = Σ_d (z − z_q)² (one fma chain in dimension order).
fn finish(row: u32, code: u32) {
    if (row >= p.n) { return; }
    indices[row] = code;
    var s = 0.0;
    for (var c = 0u; c < p.d8; c++) {
        let x = load_z(row, c);
        let y = load_e(code, c);
        store_zq(row, c, y);
        s = squares(Eight(x.lo - y.lo, x.hi - y.hi), s);
    }
    err[row] = s;
}

// indices [N], z_q [N, D] and err [N] (the last block of a search).
@compute @workgroup_size(8)
fn vq_quantize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lane: u32) {
    let t = tile_of(wg, nwg);
    if (t >= p.row_tiles) { return; }
    let m0 = 32u * t;
    let b = search(m0, lane);
    finish(m0 + lane, b[0].i); finish(m0 + 8u + lane, b[1].i);
    finish(m0 + 16u + lane, b[2].i); finish(m0 + 24u + lane, b[3].i);
}
