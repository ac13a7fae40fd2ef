// PixelCNN masked convolutions as GEMM over the allowed taps only: im2col and col2im for a tap
// list, around conv2d's matmul. Tests: kernels-tests/masked_conv.rs.
//
// A masked k×k kernel multiplied by a 0/1 mask spends half its work on zeros; here a layer is a
// list of T (dy, dx) offsets (mask A, mask B, the gated block's vertical and horizontal stacks,
// the vertical stack's down-shift), the weight holds those taps only, and the column matrix
// col[M, K] has row m = output pixel (b, y, x) and column k = (t, c), channel fastest, so col2im
// loads the 4 channels of one tap as one vec4 (2× faster than scalar loads, measured). im2col
// stores scalars: packing 4 channel loads into vec4 stores measured 4-20× slower on lavapipe
// (1 ns per element scalar at [64, 64, 7, 7]). Stride 1, output H×W = input H×W, zeros outside.

struct Params {
    c: u32, h: u32, w: u32,          // image channels and size (input and output alike)
    taps: u32,                       // T
    total: u32,                      // invocations with work (B·H·W)
    _pad0: u32, _pad1: u32, _pad2: u32,
    offsets: array<vec4<i32>, 32>,   // tap t = (dy, dx): .xy of offsets[t / 2] for even t, .zw for odd
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
// The same input / output seen as vec4s (the entry points named ...4 only).
@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst4: array<vec4<f32>>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * 64u + lid;
}

// Tap t's offset (dy, dx), dy < 0 above the output pixel, dx < 0 left of it. The index is the
// same in every lane, so the uniform load is one scalar load.
fn offset(t: u32) -> vec2<i32> {
    let q = p.offsets[t >> 1u];
    return select(q.xy, q.zw, (t & 1u) == 1u);
}

// Pixel m = (b, y, x) of a [B, H, W] grid, decomposed once per invocation (integer division is
// a per-lane loop on lavapipe).
fn pixel(m: u32) -> vec3<u32> {
    let x = m % p.w; let r = m / p.w;
    return vec3(r / p.h, r % p.h, x);
}

// The plane offset of (y + o.x, x + o.y), or -1 outside the image.
fn shifted(y: u32, x: u32, o: vec2<i32>) -> i32 {
    let sy = i32(y) + o.x;
    let sx = i32(x) + o.y;
    let inside = sy >= 0 && sy < i32(p.h) && sx >= 0 && sx < i32(p.w);
    return select(-1, sy * i32(p.w) + sx, inside);
}

// src: image [B, C, H, W] -> dst: col [B·H·W, T·C]. One invocation per pixel writes its row,
// tap by tap (the load index is clamped and the value masked outside the image). T = B·H·W.
@compute @workgroup_size(64)
fn masked_conv_im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let m = index(wg, nwg, lid);
    if (m >= p.total) { return; }
    let q = pixel(m);
    let plane = p.h * p.w;
    let image = q.x * p.c * plane;
    var out = m * p.taps * p.c;
    for (var t = 0u; t < p.taps; t++) {
        let s = shifted(q.y, q.z, offset(t));
        let base = image + u32(max(s, 0));
        for (var c = 0u; c < p.c; c++) {
            dst[out] = select(0.0, src[base + c * plane], s >= 0);
            out++;
        }
    }
}

// src: dcol [B·H·W, T·C] -> dst: image [B, C, H, W], the adjoint of im2col as a gather (no
// atomics): x(b, c, y, x) was read by tap t of pixel (y − dy, x − dx). One invocation per
// pixel sums, channel by channel, the T entries that read it. T = B·H·W.
@compute @workgroup_size(64)
fn masked_conv_col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let m = index(wg, nwg, lid);
    if (m >= p.total) { return; }
    let q = pixel(m);
    let plane = p.h * p.w;
    let row0 = q.x * plane;           // first col row of image b
    let K = p.taps * p.c;
    var out = q.x * p.c * plane + q.y * p.w + q.z;
    for (var c = 0u; c < p.c; c++) {
        var acc = 0.0;
        for (var t = 0u; t < p.taps; t++) {
            let s = shifted(q.y, q.z, -offset(t));
            let v = src[select(0u, (row0 + u32(s)) * K + t * p.c + c, s >= 0)];
            acc += select(0.0, v, s >= 0);
        }
        dst[out] = acc;
        out += plane;
    }
}

// The same for C % 4 == 0: the 4 channels of a tap in one vec4 load, 4 output planes per pass.
@compute @workgroup_size(64)
fn masked_conv_col2im4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let m = index(wg, nwg, lid);
    if (m >= p.total) { return; }
    let q = pixel(m);
    let plane = p.h * p.w;
    let row0 = q.x * plane;
    let c4 = p.c / 4u;
    let K4 = p.taps * c4;
    var out = q.x * p.c * plane + q.y * p.w + q.z;
    for (var c = 0u; c < c4; c++) {
        var acc = vec4(0.0);
        for (var t = 0u; t < p.taps; t++) {
            let s = shifted(q.y, q.z, -offset(t));
            let v = src4[select(0u, (row0 + u32(s)) * K4 + t * c4 + c, s >= 0)];
            acc += select(vec4(0.0), v, s >= 0);
        }
        dst[out] = acc.x; dst[out + plane] = acc.y;
        dst[out + 2u * plane] = acc.z; dst[out + 3u * plane] = acc.w;
        out += 4u * plane;
    }
}
