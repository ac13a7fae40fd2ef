// Convolution as GEMM: im2col (image -> column matrix) and col2im (column gradient -> image),
// the two passes around the wide matmul. Tests: kernels-tests/conv2d.rs; bench: `bench -- kernels`.
//
// Column matrix col[M, K]: row m = (b, oh, ow) an output pixel, column k = (c, i, j) a tap, so
// col · Wᵀ (W = [Cout, K], PyTorch's [Cout, Cin, kh, kw] as is) is the convolution in NHWC order.
// Why not a fused implicit GEMM (measured reasoning, lavapipe): a strided tap cannot be read
// with a wide load, so every tap of every pixel costs one scalar gather (~80 vector FMAs per
// 8 lanes) however the GEMM is organised; gathering it once here and letting the matmul read
// col with 8-float loads costs the same gathers and keeps the matmul's tiling intact.

struct Params {
    c: u32, h: u32, w: u32,        // image channels and size (input of conv2d)
    oh: u32, ow: u32,              // output size of conv2d
    kh: u32, kw: u32,              // kernel size
    sh: u32, sw: u32,              // stride
    ph: u32, pw: u32,              // padding
    dh: u32, dw: u32,              // dilation
    total: u32,                    // invocations with work
    _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
// The same output seen as vec4s (conv2d_im2col4 only).
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<f32>>;

override HAS_BIAS: bool = false; // col2im: add bias[c] (conv-transpose forward)

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * 64u + lid;
}

// x[b, c, ih0 + i·dh, iw0 + j·dw], or 0 in the padding (the load index is clamped, the value masked).
fn tap(base: u32, ih0: i32, iw0: i32, i: u32, j: u32) -> f32 {
    let ih = ih0 + i32(i * p.dh);
    let iw = iw0 + i32(j * p.dw);
    let inside = ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w);
    let v = src[select(0u, base + u32(ih) * p.w + u32(iw), inside)];
    return select(0.0, v, inside);
}

// One im2col segment: the kh·kw taps of image channel c for output pixel m, to col[m, c·kh·kw ..].
struct Segment { base: u32, ih0: i32, iw0: i32, out: u32 }

fn segment(idx: u32) -> Segment {
    let c = idx % p.c; let m = idx / p.c;
    let ow = m % p.ow; let t = m / p.ow;
    let oh = t % p.oh; let b = t / p.oh;
    return Segment((b * p.c + c) * p.h * p.w, i32(oh * p.sh) - i32(p.ph),
                   i32(ow * p.sw) - i32(p.pw), idx * p.kh * p.kw);
}

// src: image [B, C, H, W] -> dst: col [B·OH·OW, C·kh·kw]. One invocation per (pixel m, channel c)
// writes the kh·kw contiguous taps of its segment; T = B·OH·OW·C.
@compute @workgroup_size(64)
fn conv2d_im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let idx = index(wg, nwg, lid);
    if (idx >= p.total) { return; }
    let s = segment(idx);
    for (var i = 0u; i < p.kh; i++) {
        for (var j = 0u; j < p.kw; j++) {
            dst[s.out + i * p.kw + j] = tap(s.base, s.ih0, s.iw0, i, j);
        }
    }
}

// The same when kh·kw % 4 == 0: segments are vec4-aligned and stored 4 taps at a time (a store
// costs about as much as a load on lavapipe, whatever its width).
@compute @workgroup_size(64)
fn conv2d_im2col4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let idx = index(wg, nwg, lid);
    if (idx >= p.total) { return; }
    let s = segment(idx);
    var i = 0u; var j = 0u;
    for (var q = 0u; q < p.kh * p.kw; q += 4u) {
        var v: vec4<f32>;
        v.x = tap(s.base, s.ih0, s.iw0, i, j); j++; if (j == p.kw) { j = 0u; i++; }
        v.y = tap(s.base, s.ih0, s.iw0, i, j); j++; if (j == p.kw) { j = 0u; i++; }
        v.z = tap(s.base, s.ih0, s.iw0, i, j); j++; if (j == p.kw) { j = 0u; i++; }
        v.w = tap(s.base, s.ih0, s.iw0, i, j); j++; if (j == p.kw) { j = 0u; i++; }
        dst4[(s.out + q) / 4u] = v;
    }
}

// The first tap t (< step) of one axis whose output coordinate (x + pad - t·d) / s is whole, and
// the step between such taps (s / gcd(s, d)); a first tap past any kernel when none is (whether
// a tap lands on the lattice repeats with period `step`).
fn first_tap(x: u32, pad: u32, s: u32, d: u32) -> vec2<u32> {
    var step = s;
    for (var t = 1u; t <= s; t++) {
        if ((t * d) % s == 0u) { step = t; break; }
    }
    var first = 0x40000000u;
    for (var t = 0u; t < step; t++) {
        if ((x + pad + s * d * step - t * d) % s == 0u) { first = t; break; }
    }
    return vec2(first, step);
}

// src: dcol [B·OH·OW, C·kh·kw] -> dst: image [B, C, H, W] (+ bias[c]). The adjoint of im2col as
// a gather, so no atomics: one invocation per image element sums the col entries of the taps that
// read it; only taps on the stride lattice are visited (k4 s2: 4 of 16). T = B·C·H·W.
@compute @workgroup_size(64)
fn conv2d_col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let idx = index(wg, nwg, lid);
    if (idx >= p.total) { return; }
    let x = idx % p.w; let t0 = idx / p.w;
    let y = t0 % p.h; let t1 = t0 / p.h;
    let c = t1 % p.c; let b = t1 / p.c;
    let K = p.c * p.kh * p.kw;
    let fi = first_tap(y, p.ph, p.sh, p.dh);
    let fj = first_tap(x, p.pw, p.sw, p.dw);
    var acc = 0.0;
    for (var i = fi.x; i < p.kh; i += fi.y) {
        let oy = i32(y + p.ph) - i32(i * p.dh);   // = oh · sh
        let oh = oy / i32(p.sh);
        if (oy < 0 || oh >= i32(p.oh)) { continue; }
        let row = (b * p.oh + u32(oh)) * p.ow;
        for (var j = fj.x; j < p.kw; j += fj.y) {
            let ox = i32(x + p.pw) - i32(j * p.dw);
            let ow = ox / i32(p.sw);
            let inside = ox >= 0 && ow < i32(p.ow);
            let v = src[select(0u, (row + u32(ow)) * K + (c * p.kh + i) * p.kw + j, inside)];
            acc += select(0.0, v, inside);
        }
    }
    if (HAS_BIAS) { acc += bias[c]; }
    dst[idx] = acc;
}
