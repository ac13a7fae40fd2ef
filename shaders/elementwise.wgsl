// Elementwise kernels: unary maps, binary ops with row/column/scalar broadcasting, affine,
// clamp and fill. Launcher: src/kernels/elementwise.rs; CPU twin and tests: kernels-tests/elementwise.rs.

struct Params {
    n: u32,       // elements of the output
    cols: u32,    // last-axis length of the output, for row/column broadcasting
    mode_x: u32,  // broadcast of x: 0 full, 1 row vector [cols], 2 column vector [n/cols], 3 scalar
    mode_y: u32,  // broadcast of y, same codes
    a: f32,       // scale / lower bound / fill value
    b: f32,       // shift / upper bound
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
// The same buffers as vec4s, for the entry points named ...4: every operand is full or a row
// vector with cols % 4 == 0, and p.n, p.cols count vec4s. A load costs the same per lane on
// lavapipe whatever its width, so these do a quarter of the loads and stores.
@group(0) @binding(0) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> y4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;

// Operation selector, specialised per pipeline so the loop body has no switch.
override OP: u32 = 0u;

const WG: u32 = 256u;

// Linear element index; grids above 65,535 workgroups are folded into y (and z).
fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

fn source(i: u32, mode: u32) -> u32 {
    switch mode {
        case 1u: { return i % p.cols; }
        case 2u: { return i / p.cols; }
        case 3u: { return 0u; }
        default: { return i; }
    }
}

// The negative-side slope of the leaky ReLU (PyTorch's default); mirrored by `LEAK` in
// src/kernels/elementwise.rs.
const LEAK: f32 = 0.01;

fn stable_sigmoid(v: f32) -> f32 {
    // exp of a non-positive number never overflows.
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

fn apply_unary(v: f32) -> f32 {
    switch OP {
        case 0u: { return -v; }
        case 1u: { return exp(v); }
        case 2u: { return log(v); }
        case 3u: { return sqrt(v); }
        case 4u: { return max(v, 0.0); }
        case 5u: { return stable_sigmoid(v); }
        // tanh is exactly ±1 in f32 beyond |v| = 9; clamping avoids inf/inf in some drivers.
        case 6u: { return tanh(clamp(v, -15.0, 15.0)); }
        // softplus(v) = max(v, 0) + log(1 + exp(-|v|)): no overflow for large |v|.
        case 7u: { return max(v, 0.0) + log(1.0 + exp(-abs(v))); }
        case 8u: { return v * v; }
        // Leaky ReLU with PyTorch's default slope.
        default: { return select(LEAK * v, v, v > 0.0); }
    }
}

fn apply_binary(u: f32, v: f32) -> f32 {
    switch OP {
        case 0u: { return u + v; }
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return max(u, v); }
        case 5u: { return min(u, v); }
        // ReLU's backward: the gradient u where the ReLU output v is positive.
        case 6u: { return select(0.0, u, v > 0.0); }
        // Leaky ReLU's backward: u where its output v is positive, LEAK·u elsewhere.
        default: { return select(LEAK * u, u, v > 0.0); }
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out[i] = apply_unary(x[i]);
    }
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out[i] = apply_binary(x[source(i, p.mode_x)], y[source(i, p.mode_y)]);
    }
}

// out = a·x + b, x broadcast to out (a scalar gradient spread over a row, say)
@compute @workgroup_size(256)
fn affine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out[i] = fma(p.a, x[source(i, p.mode_x)], p.b);
    }
}

// out += a·x (gradient accumulation in place), x broadcast to out
@compute @workgroup_size(256)
fn accumulate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out[i] = fma(p.a, x[source(i, p.mode_x)], out[i]);
    }
}

// out = min(max(x, a), b)
@compute @workgroup_size(256)
fn clamp_range(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out[i] = min(max(x[i], p.a), p.b);
    }
}

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out[i] = p.a;
    }
}

fn source4(i: u32, mode: u32) -> u32 {
    return select(i, i % p.cols, mode == 1u);
}

fn unary_v(v: vec4<f32>) -> vec4<f32> {
    return vec4(apply_unary(v.x), apply_unary(v.y), apply_unary(v.z), apply_unary(v.w));
}

fn binary_v(u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    return vec4(apply_binary(u.x, v.x), apply_binary(u.y, v.y), apply_binary(u.z, v.z),
                apply_binary(u.w, v.w));
}

@compute @workgroup_size(256)
fn unary4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out4[i] = unary_v(x4[i]);
    }
}

@compute @workgroup_size(256)
fn binary4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out4[i] = binary_v(x4[source4(i, p.mode_x)], y4[source4(i, p.mode_y)]);
    }
}

@compute @workgroup_size(256)
fn affine4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out4[i] = fma(vec4(p.a), x4[source4(i, p.mode_x)], vec4(p.b));
    }
}

@compute @workgroup_size(256)
fn accumulate4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        out4[i] = fma(vec4(p.a), x4[source4(i, p.mode_x)], out4[i]);
    }
}
