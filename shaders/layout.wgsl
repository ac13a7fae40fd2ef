// Layout kernels: batched transpose of the last two axes, strided block copy (concat, slice),
// row gather by u32 index and the channel permutes of images (channels first <-> last). Launcher: src/kernels/layout.rs; tests: kernels-tests/layout.rs.

// Every kernel here moves bits, never values: buffers are viewed as u32 so f32 and u32 tensors
// share one pipeline and NaN payloads survive.
struct Params {
    rows: u32,        // copy: outer blocks; gather: indices; transpose: R of [B, R, C]
    cols: u32,        // copy: len·inner elements per block; gather: D; transpose: C
    tiles_c: u32,     // tiles along cols
    tiles: u32,       // transpose: tiles in total (the folded grid's tail is skipped)
    src_stride: u32,  // copy: source elements between blocks
    src_offset: u32,  // copy: first source element
    dst_stride: u32,  // copy: destination elements between blocks
    dst_offset: u32,  // copy: first destination element
    table_rows: u32,  // gather: rows N of the table; larger indices give zero rows
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
// The same input / output in vec4s (the channel permutes named ...4 only).
@group(0) @binding(0) var<storage, read> src4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<u32>>;

const WG: u32 = 256u;
// Lanes along a row for copy and gather (a power of two ≤ WG, chosen per shape by the host),
// so a narrow row does not leave most of a workgroup idle; the lane split compiles to shifts.
override COLS: u32 = 256u;
override ROWS: u32 = WG / COLS;
// Row tiles per workgroup for copy and gather: on lavapipe a workgroup launch costs about as
// much as moving a tile, and 4 tiles per workgroup made a 16M-element copy 1.9× faster.
const STEPS: u32 = 4u;
// Transpose tile edge; each of the 32×8 lanes moves 4 elements.
const T: u32 = 32u;

var<workgroup> tile: array<u32, 1056>;  // T × (T + 1): the pad column avoids bank conflicts

// Workgroup index; grids above 65,535 workgroups are folded into y (and z).
fn workgroup_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

// The (row, col) cell of a ROWS × COLS tile that this lane handles; row = p.rows when outside.
fn cell(wid: u32, lid: u32) -> vec2<u32> {
    let row = (wid / p.tiles_c) * ROWS + lid / COLS;
    let col = (wid % p.tiles_c) * COLS + lid % COLS;
    // Tiles past the last one (the grid's tail) land on row ≥ p.rows, so they are skipped too.
    if row >= p.rows || col >= p.cols {
        return vec2<u32>(p.rows, 0u);
    }
    return vec2<u32>(row, col);
}

// dst[row·dst_stride + dst_offset + col] = src[row·src_stride + src_offset + col]:
// one block of a tensor viewed as [outer, axis, inner] (concat writes one part per launch).
@compute @workgroup_size(256)
fn copy_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    for (var k = 0u; k < STEPS; k++) {
        let c = cell(workgroup_index(wg, nwg) * STEPS + k, lid);
        if c.x < p.rows {
            dst[c.x * p.dst_stride + p.dst_offset + c.y] =
                src[c.x * p.src_stride + p.src_offset + c.y];
        }
    }
}

// dst[s, :] = table[indices[s], :], or zeros when indices[s] ≥ N: the launcher cannot see the
// indices, so the guard lives here and nothing outside the table is read.
@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    for (var k = 0u; k < STEPS; k++) {
        let c = cell(workgroup_index(wg, nwg) * STEPS + k, lid);
        if c.x < p.rows {
            let index = indices[c.x];
            var v = 0u;
            if index < p.table_rows {
                v = src[index * p.cols + c.y];
            }
            dst[c.x * p.cols + c.y] = v;
        }
    }
}

// [B, R, C] -> [B, C, R]: a T×T tile is read along rows of the input and written along rows
// of the output through workgroup memory, so both sides touch contiguous runs.
@compute @workgroup_size(32, 8)
fn transpose(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) l: vec3<u32>) {
    let wid = workgroup_index(wg, nwg);
    // Uniform per workgroup, so the early exit keeps the barrier in uniform control flow.
    if wid >= p.tiles {
        return;
    }
    let per_matrix = ((p.rows + T - 1u) / T) * p.tiles_c;
    let base = (wid / per_matrix) * p.rows * p.cols;
    let r0 = ((wid % per_matrix) / p.tiles_c) * T;
    let c0 = ((wid % per_matrix) % p.tiles_c) * T;
    for (var j = 0u; j < T; j += 8u) {
        let r = r0 + l.y + j;
        let c = c0 + l.x;
        if r < p.rows && c < p.cols {
            tile[(l.y + j) * (T + 1u) + l.x] = src[base + r * p.cols + c];
        }
    }
    workgroupBarrier();
    for (var j = 0u; j < T; j += 8u) {
        let c = c0 + l.y + j;
        let r = r0 + l.x;
        if r < p.rows && c < p.cols {
            dst[base + c * p.rows + r] = tile[l.x * (T + 1u) + l.y + j];
        }
    }
}

// Channels-first [B, C, P] <-> channels-last [B·P, C] with C = p.cols, B·P = p.rows and P =
// p.src_stride pixels per image: one invocation per pixel walking its C channels. Cheaper than
// a tiled transpose on lavapipe, where a workgroup barrier costs more than the loads it saves.
fn pixel_bases(m: u32) -> vec2<u32> {
    let b = m / p.src_stride; let q = m % p.src_stride;
    return vec2(b * p.cols * p.src_stride + q, m * p.cols);   // (first channel in [B, C, P], in [B·P, C])
}

fn pixel_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return workgroup_index(wg, nwg) * 64u + lid;
}

@compute @workgroup_size(64)
fn channels_last(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let m = pixel_index(wg, nwg, lid);
    if (m >= p.rows) { return; }
    let o = pixel_bases(m);
    let plane = p.src_stride;
    for (var c = 0u; c < p.cols; c++) { dst[o.y + c] = src[o.x + c * plane]; }
}

// The same for C % 4 == 0: 4 channels per vec4 store.
@compute @workgroup_size(64)
fn channels_last4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let m = pixel_index(wg, nwg, lid);
    if (m >= p.rows) { return; }
    let o = pixel_bases(m);
    let plane = p.src_stride;
    for (var c = 0u; c < p.cols; c += 4u) {
        let i = o.x + c * plane;
        dst4[(o.y + c) / 4u] = vec4(src[i], src[i + plane], src[i + 2u * plane], src[i + 3u * plane]);
    }
}

@compute @workgroup_size(64)
fn channels_first(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let m = pixel_index(wg, nwg, lid);
    if (m >= p.rows) { return; }
    let o = pixel_bases(m);
    let plane = p.src_stride;
    for (var c = 0u; c < p.cols; c++) { dst[o.x + c * plane] = src[o.y + c]; }
}

// The same for C % 4 == 0: 4 channels per vec4 load.
@compute @workgroup_size(64)
fn channels_first4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let m = pixel_index(wg, nwg, lid);
    if (m >= p.rows) { return; }
    let o = pixel_bases(m);
    let plane = p.src_stride;
    for (var c = 0u; c < p.cols; c += 4u) {
        let v = src4[(o.y + c) / 4u];
        let i = o.x + c * plane;
        dst[i] = v.x; dst[i + plane] = v.y; dst[i + 2u * plane] = v.z; dst[i + 3u * plane] = v.w;
    }
}
