// Convolution as GEMM: im2col (image -> column matrix) and col2im (column gradient -> image),
// the two passes around the wide matmul. Tests: kernels-tests/conv2d.rs; bench: `bench -- kernels`.
//
// Column matrix col[M, K]: row m = (b, oh, ow) an output pixel, column k = (c, i, j) a tap, so
// col · Wᵀ (W = [Cout, K], PyTorch's [Cout, Cin, kh, kw] as is) is the convolution in NHWC order.
// Where the shapes allow (kw % 4 == 0, no dilation along x, and the device's subgroups and
// int64), the convolution runs as implicit GEMM instead (conv2d_igemm.wgsl): 4 adjacent taps cut
// from two aligned vec4s, each gathered once for all output channels of the tile, measured
// 1.5-1.7x faster on the W2 layers than these passes and the matmul. These passes remain for
// the other shapes and for devices without those features.

struct Params {
    c: u32, h: u32, w: u32,        // image channels and size (input of conv2d)
    oh: u32, ow: u32,              // output size of conv2d
    kh: u32, kw: u32,              // kernel size
    sh: u32, sw: u32,              // stride
    ph: u32, pw: u32,              // padding
    dh: u32, dw: u32,              // dilation
    total: u32,                    // invocations with work
    step_h: u32, step_w: u32,      // tap lattice period s / gcd(s, d) (col2im)
}

// Compiled after shaders/bias/no_bias.wgsl or bias.wgsl (col2im adds bias_at(c) with HAS_BIAS:
// the conv-transpose forward; the bias binding is 2).
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
// The same input / output seen as vec4s (the entry points named ...4 only).
@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dst4: array<vec4<f32>>;

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

// Output pixel m = (b, oh, ow): (offset of image b, top row, left column) of its window.
fn pixel_origin(m: u32) -> vec3<i32> {
    let ow = m % p.ow; let t = m / p.ow;
    let oh = t % p.oh; let b = t / p.oh;
    return vec3(i32(b * p.c * p.h * p.w), i32(oh * p.sh) - i32(p.ph), i32(ow * p.sw) - i32(p.pw));
}

// src: image [B, C, H, W] -> dst: col [B·OH·OW, C·kh·kw]. One invocation per output pixel m
// writes its whole row of col, channel by channel (integer division is a per-lane scalar loop
// on lavapipe, as dear as a load, so the pixel is decomposed once); T = B·OH·OW.
@compute @workgroup_size(64)
fn conv2d_im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let m = index(wg, nwg, lid);
    if (m >= p.total) { return; }
    let o = pixel_origin(m);
    let ih0 = o.y; let iw0 = o.z;
    var base = u32(o.x);
    var out = m * p.c * p.kh * p.kw;
    for (var c = 0u; c < p.c; c++) {
        for (var i = 0u; i < p.kh; i++) {
            for (var j = 0u; j < p.kw; j++) {
                dst[out] = tap(base, ih0, iw0, i, j);
                out++;
            }
        }
        base += p.h * p.w;
    }
}

// The same when C·kh·kw % 4 == 0: rows are vec4-aligned and stored 4 taps at a time, the tap
// counters (c, i, j) rolling across channels (a store costs about as much as a load on
// lavapipe, whatever its width).
@compute @workgroup_size(64)
fn conv2d_im2col4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let m = index(wg, nwg, lid);
    if (m >= p.total) { return; }
    let o = pixel_origin(m);
    let ih0 = o.y; let iw0 = o.z;
    let K = p.c * p.kh * p.kw;
    let base = u32(o.x);
    var out = m * K / 4u;
    // (base, i, j) of the next tap; unrolled by hand, as a dynamic vector index would spill.
    var at = vec3(base, 0u, 0u);
    for (var q = 0u; q < K; q += 4u) {
        var v: vec4<f32>;
        v.x = tap(at.x, ih0, iw0, at.y, at.z); at = next_tap(at);
        v.y = tap(at.x, ih0, iw0, at.y, at.z); at = next_tap(at);
        v.z = tap(at.x, ih0, iw0, at.y, at.z); at = next_tap(at);
        v.w = tap(at.x, ih0, iw0, at.y, at.z); at = next_tap(at);
        dst4[out] = v;
        out++;
    }
}

// The tap after (channel base, i, j) in (c, i, j) order.
fn next_tap(at: vec3<u32>) -> vec3<u32> {
    var r = at;
    r.z++;
    if (r.z == p.kw) { r.z = 0u; r.y++; }
    if (r.y == p.kh) { r.y = 0u; r.x += p.h * p.w; }
    return r;
}

// The same when the taps of a kernel row are adjacent (dilation 1 along x) and kw % 4 == 0:
// 4 taps are cut out of the two aligned vec4s that cover them, 2 loads instead of 4. Taps in
// the padding are masked; a vec4 index clamped into the buffer only ever serves masked taps.
@compute @workgroup_size(64)
fn conv2d_im2col_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let m = index(wg, nwg, lid);
    if (m >= p.total) { return; }
    let o = pixel_origin(m);
    let ih0 = o.y; let iw0 = o.z;
    let last = i32(arrayLength(&src4)) - 1;
    var base = o.x;
    var out = m * p.c * p.kh * p.kw / 4u;
    for (var c = 0u; c < p.c; c++) {
        for (var i = 0u; i < p.kh; i++) {
            let ih = ih0 + i32(i * p.dh);
            let row_in = ih >= 0 && ih < i32(p.h);
            for (var q = 0u; q < p.kw; q += 4u) {
                let ix = iw0 + i32(q);
                var v = vec4(0.0);
                if (row_in) {
                    let e = base + ih * i32(p.w) + ix;
                    let a = e >> 2u;
                    let v0 = src4[clamp(a, 0, last)];
                    let v1 = src4[clamp(a + 1, 0, last)];
                    switch (e & 3) {
                        case 0: { v = v0; }
                        case 1: { v = vec4(v0.yzw, v1.x); }
                        case 2: { v = vec4(v0.zw, v1.xy); }
                        default: { v = vec4(v0.w, v1.xyz); }
                    }
                    let x4 = vec4(ix) + vec4(0, 1, 2, 3);
                    v = select(vec4(0.0), v, x4 >= vec4(0) & x4 < vec4(i32(p.w)));
                }
                dst4[out] = v;
                out++;
            }
        }
        base += i32(p.h * p.w);
    }
}

// The first tap t of one axis whose output coordinate (x + pad − t·d) / s is whole, for
// r = (x + pad) mod s, found by stepping the residue (r − t·d) mod s down by d mod s (no
// division). Taps on the lattice repeat every `step` = s / gcd(s, d) (host-computed); none is
// on it when the first `step` taps miss, and then a first tap past any kernel is returned.
fn first_tap(r: u32, s: u32, dmod: u32, step: u32) -> u32 {
    var rr = r;
    for (var t = 0u; t < step; t++) {
        if (rr == 0u) { return t; }
        rr = select(rr + s - dmod, rr - dmod, rr >= dmod);
    }
    return 0x40000000u;
}

// o / s for an o known to be a multiple of s: exact in f32 below 2^24, and a vector divide
// where an integer one would be a per-lane loop.
fn exact_div(o: i32, s: u32) -> i32 {
    return i32(round(f32(o) / f32(s)));
}

// src: dcol [B·OH·OW, C·kh·kw] -> dst: image [B, C, H, W] (+ bias[c]). The adjoint of im2col as
// a gather, so no atomics: one invocation per image row (b, c, y) walks its W elements, each
// summing the col entries of the taps that read it; only taps on the stride lattice are visited
// (k4 s2: 4 of 16). T = B·C·H.
@compute @workgroup_size(64)
fn conv2d_col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = index(wg, nwg, lid);
    if (row >= p.total) { return; }
    let y = row % p.h; let t = row / p.h;
    let c = t % p.c; let b = t / p.c;
    let K = p.c * p.kh * p.kw;
    let fi = first_tap((y + p.ph) % p.sh, p.sh, p.dh % p.sh, p.step_h);
    let col0 = b * p.oh * p.ow;
    var rx = p.pw % p.sw;   // (x + pw) mod sw, stepped along the row
    var out = row * p.w;
    var add = 0.0;
    if (HAS_BIAS) { add = bias_at(c); }
    for (var x = 0u; x < p.w; x++) {
        let fj = first_tap(rx, p.sw, p.dw % p.sw, p.step_w);
        var acc = add;
        for (var i = fi; i < p.kh; i += p.step_h) {
            let oy = i32(y + p.ph) - i32(i * p.dh);   // = oh · sh
            let oh = exact_div(oy, p.sh);
            if (oy < 0 || oh >= i32(p.oh)) { continue; }
            let line = col0 + u32(oh) * p.ow;
            let k0 = (c * p.kh + i) * p.kw;
            for (var j = fj; j < p.kw; j += p.step_w) {
                let ox = i32(x + p.pw) - i32(j * p.dw);
                let ow = exact_div(ox, p.sw);
                let inside = ox >= 0 && ow < i32(p.ow);
                let v = src[select(0u, (line + u32(ow)) * K + k0 + j, inside)];
                acc += select(0.0, v, inside);
            }
        }
        dst[out] = acc;
        out++;
        rx++;
        if (rx == p.sw) { rx = 0u; }
    }
}

// The same gather for C % 4 == 0 with the taps of dcol in (i, j, c) order, channel fastest
// (dcol = dy_rows · W permuted to [Cout, kh, kw, C]): the 4 channels of one tap are one vec4
// load, so 4 output rows cost a quarter of the loads. One invocation per (b, c/4, y); T = B·C/4·H.
@compute @workgroup_size(64)
fn conv2d_col2im4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row = index(wg, nwg, lid);
    if (row >= p.total) { return; }
    let c4 = p.c / 4u;
    let y = row % p.h; let t = row / p.h;
    let c = (t % c4) * 4u; let b = t / c4;
    let K4 = c4 * p.kh * p.kw;
    let fi = first_tap((y + p.ph) % p.sh, p.sh, p.dh % p.sh, p.step_h);
    let col0 = b * p.oh * p.ow;
    var rx = p.pw % p.sw;
    let plane = p.h * p.w;
    var out = ((b * p.c + c) * p.h + y) * p.w;
    var add = vec4(0.0);
    if (HAS_BIAS) { add = vec4(bias_at(c), bias_at(c + 1u), bias_at(c + 2u), bias_at(c + 3u)); }
    for (var x = 0u; x < p.w; x++) {
        let fj = first_tap(rx, p.sw, p.dw % p.sw, p.step_w);
        var acc = add;
        for (var i = fi; i < p.kh; i += p.step_h) {
            let oy = i32(y + p.ph) - i32(i * p.dh);
            let oh = exact_div(oy, p.sh);
            if (oy < 0 || oh >= i32(p.oh)) { continue; }
            let line = col0 + u32(oh) * p.ow;
            for (var j = fj; j < p.kw; j += p.step_w) {
                let ox = i32(x + p.pw) - i32(j * p.dw);
                let ow = exact_div(ox, p.sw);
                let inside = ox >= 0 && ow < i32(p.ow);
                let v = src4[select(0u, (line + u32(ow)) * K4 + (i * p.kw + j) * c4 + c / 4u, inside)];
                acc += select(vec4(0.0), v, inside);
            }
        }
        dst[out] = acc.x; dst[out + plane] = acc.y;
        dst[out + 2u * plane] = acc.z; dst[out + 3u * plane] = acc.w;
        out++;
        rx++;
        if (rx == p.sw) { rx = 0u; }
    }
}
