// Counter-based random numbers: Philox-4x32-10 words (philox/philox.wgsl, prepended) mapped to
// uniforms, Box–Muller normals, Bernoulli draws and random shifts and flips of images
// (augmentation). Launcher: src/kernels/random.rs; CPU twin and tests: kernels-tests/random.rs.
//
// No state on the GPU: element i of a draw is word i % 4 of
//   philox(counter = (offset + i / 4 as one 64-bit number in words 0-1, 0, 0), key = seed),
// so it depends on (seed, offset, i) alone. One invocation computes one block of 4 values. The
// `*4` entries store them as one vec4 when n % 4 == 0 (a storage access on llvmpipe is a loop
// over the SIMD lanes, so a vec4 store costs about one scalar store: uniforms run 1.5x faster
// than with 4 scalar stores); the `*1` entries store up to 4 scalars and skip those at or past
// n, so the last partial block stays in bounds.

struct Params {
    n: u32,       // values to draw
    blocks: u32,  // ceil(n / 4): invocations with work
    key0: u32,    // seed, low word
    key1: u32,    // seed, high word
    off0: u32,    // offset in blocks, low word
    off1: u32,    // offset in blocks, high word
    _pad0: u32,
    _pad1: u32,
}

// Each entry point uses one view of a binding: scalar for any n, vec4 when n % 4 == 0.
@group(0) @binding(0) var<storage, read> probs: array<f32>;
@group(0) @binding(0) var<storage, read> probs4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

// Draw standard normals instead of uniforms in the `sample*` entries.
override NORMAL: bool = false;

const WG: u32 = 64u;

// The 4 words of block q of this draw.
fn block(q: u32) -> vec4<u32> {
    return philox_at(vec2(p.key0, p.key1), vec2(p.off0, p.off1), q);
}

// ln u1 for u1 = (k + 1)·2^-24 in (0, 1]. Near 1 a library log has an absolute error of about
// 2^-23 (lavapipe: 1e-7), which is all of ln u1 when u1 ≈ 1 and would give a tiny radius a
// relative error of percents. There d = 1 - u1 is exact and ln(1 - d) = -2·atanh(s) with
// s = d / (2 - d) ≤ 1/7: four odd terms leave a relative error below 2e-8.
fn ln_u1(k: vec2<u32>) -> vec2<f32> {
    let d = vec2<f32>(vec2(0xffffffu) - k) * 0x1p-24f;
    let s = d / (2.0 - d);
    let s2 = s * s;
    let series = -2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0))));
    let u1 = vec2<f32>(k + vec2(1u)) * 0x1p-24f;
    return select(log(u1), series, d < vec2(0.25));
}

// Box–Muller on word pairs (x, y) and (z, w): r = sqrt(-2 ln u1), z = r·(cos θ, sin θ), with
// u1 in (0, 1] so the log never sees 0 (largest |z| = sqrt(48 ln 2) ≈ 5.77) and θ = π·t,
// t = k·2^-23 - 1 in [-1, 1) exactly: WGSL bounds the error of sin and cos only on [-π, π].
fn gauss(x: vec4<u32>) -> vec4<f32> {
    let r = sqrt(-2.0 * ln_u1(x.xz >> vec2(8u)));
    let theta = 3.141592653589793 * (vec2<f32>(x.yw >> vec2(8u)) * 0x1p-23f - 1.0);
    return vec4(r.x * cos(theta.x), r.x * sin(theta.x), r.y * cos(theta.y), r.y * sin(theta.y));
}

fn values(q: u32) -> vec4<f32> {
    let x = block(q);
    if NORMAL {
        return gauss(x);
    }
    return unit(x);
}

// Block index; grids above 65,535 workgroups are folded into y (and z).
fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

// Stores block q's values at 4q.. 4q+3, skipping those at or past n.
fn store1(q: u32, v: vec4<f32>) {
    let i = 4u * q;
    out[i] = v.x;
    if i + 1u < p.n { out[i + 1u] = v.y; }
    if i + 2u < p.n { out[i + 2u] = v.z; }
    if i + 3u < p.n { out[i + 3u] = v.w; }
}

// out[i] = uniform [0, 1) or standard normal; n % 4 == 0.
@compute @workgroup_size(64)
fn sample4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let q = index(wg, nwg, lid);
    if q < p.blocks {
        out4[q] = values(q);
    }
}

// The same for any n.
@compute @workgroup_size(64)
fn sample1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let q = index(wg, nwg, lid);
    if q < p.blocks {
        store1(q, values(q));
    }
}

// out[i] = 1 if u[i] < probs[i] else 0, u the uniform draw of the same (seed, offset); n % 4 == 0.
@compute @workgroup_size(64)
fn bernoulli4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let q = index(wg, nwg, lid);
    if q < p.blocks {
        out4[q] = select(vec4(0.0), vec4(1.0), unit(block(q)) < probs4[q]);
    }
}

// The same for any n; loads past n are clamped to the last element and their results dropped.
@compute @workgroup_size(64)
fn bernoulli1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let q = index(wg, nwg, lid);
    if q < p.blocks {
        let i = 4u * q;
        let last = p.n - 1u;
        let pr = vec4(probs[i], probs[min(i + 1u, last)], probs[min(i + 2u, last)],
                      probs[min(i + 3u, last)]);
        store1(q, select(vec4(0.0), vec4(1.0), unit(block(q)) < pr));
    }
}

// Data augmentation of square images: each image b of a batch [B, side²] is flipped left to
// right with probability 1/2 (when `flip` is 1), then shifted by (dy, dx), each uniform in
// [-max_shift, max_shift], with zeros shifted in:
//   out[b, y, x] = in[b, y - dy, x0 - dx],  x0 = side - 1 - x when flipped, else x.
// Image b's draws are the words of Philox block `offset + b` (key = seed): dy from word 0,
// dx from word 1, the flip from bit 0 of word 2 (a modulo of 32-bit words: bias below 2^-29).
// One invocation per output pixel; it recomputes its image's block.
struct Augment {
    n: u32,          // B·side²
    side: u32,
    max_shift: u32,
    flip: u32,
    key: vec2<u32>,  // seed, low word first
    off: vec2<u32>,  // offset in blocks, low word first
}

@group(0) @binding(2) var<uniform> a: Augment;

@compute @workgroup_size(64)
fn shift_flip(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i >= a.n {
        return;
    }
    let area = a.side * a.side;
    let b = i / area;
    let y = i32((i % area) / a.side);
    let x = i32(i % a.side);
    let w = philox_at(a.key, a.off, b);
    let span = 2u * a.max_shift + 1u;
    let dy = i32(w.x % span) - i32(a.max_shift);
    let dx = i32(w.y % span) - i32(a.max_shift);
    let flipped = a.flip == 1u && (w.z & 1u) == 1u;
    let x0 = select(x, i32(a.side) - 1 - x, flipped);
    let sy = y - dy;
    let sx = x0 - dx;
    let side = i32(a.side);
    var v = 0.0;
    if sy >= 0 && sy < side && sx >= 0 && sx < side {
        v = probs[b * area + u32(sy) * a.side + u32(sx)];
    }
    out[i] = v;
}
