// Optimizer updates in place: fused Adam / AdamW, SGD with (Nesterov) momentum, plain SGD,
// following torch.optim exactly. Launcher: src/kernels/adam.rs; tests: kernels-tests/adam.rs.

// Every scalar that depends only on hyperparameters and the step t (1 − β, lr / (1 − β1ᵗ),
// sqrt(1 − β2ᵗ), 1 − lr·wd) is computed on the host in f64, as PyTorch does with Python
// floats; the shader does no pow.
struct Params {
    n: u32,                // elements of the parameter
    lr: f32,               // SGD (Adam's lr is inside step_size and decay)
    momentum: f32,         // SGD: μ
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    weight_decay: f32,     // L2 term added to the gradient (Adam, SGD)
    decay: f32,            // AdamW: 1 − lr·wd, the decoupled shrink of the weights
    step_size: f32,        // Adam: lr / (1 − β1ᵗ)
    bias2_sqrt: f32,       // Adam: sqrt(1 − β2ᵗ)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
// Adam: first and second moments; SGD: m is the momentum buffer and v is unused.
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// AdamW (decoupled weight decay) instead of Adam with an L2 term.
override DECOUPLED: bool = false;
// SGD: look ahead along the momentum (Sutskever et al. 2013, as torch.optim.SGD writes it).
override NESTEROV: bool = false;

const WG: u32 = 256u;

// Linear element index; grids above 65,535 workgroups are folded into y (and z).
fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

// The updated (weights, first moment, second moment).
struct AdamState {
    w: vec4<f32>,
    m: vec4<f32>,
    v: vec4<f32>,
}

// torch.optim.Adam / AdamW, single-tensor path, on 4 elements at once:
//   AdamW: w ← w·(1 − lr·wd)        Adam: g ← g + wd·w
//   m ← m + (1 − β1)(g − m)          (β1·m + (1 − β1)·g as PyTorch's lerp rounds it for β1 ≥ ½)
//   v ← β2·v + (1 − β2)·g²
//   w ← w − lr/(1 − β1ᵗ) · m / (sqrt(v) / sqrt(1 − β2ᵗ) + ε)
fn adam_update(g_in: vec4<f32>, w_in: vec4<f32>, m0: vec4<f32>, v0: vec4<f32>) -> AdamState {
    var g = g_in;
    var w = w_in;
    if DECOUPLED {
        w *= p.decay;
    } else {
        g += p.weight_decay * w;
    }
    let m1 = m0 + p.one_minus_beta1 * (g - m0);
    let v1 = p.beta2 * v0 + p.one_minus_beta2 * g * g;
    let denom = sqrt(v1) / p.bias2_sqrt + p.eps;
    return AdamState(w - p.step_size * (m1 / denom), m1, v1);
}

// One element per invocation (any length).
@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i >= p.n {
        return;
    }
    let s = adam_update(vec4(grad[i]), vec4(param[i]), vec4(m[i]), vec4(v[i]));
    m[i] = s.m.x;
    v[i] = s.v.x;
    param[i] = s.w.x;
}

// Four elements per invocation through vec4 views (length % 4 == 0; `p.n` counts vec4s):
// on llvmpipe every storage access is a per-lane loop whatever its width, so this does the
// same work with a quarter of the loads and stores.
@group(0) @binding(0) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> v4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn adam4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i >= p.n {
        return;
    }
    let s = adam_update(grad4[i], param4[i], m4[i], v4[i]);
    m4[i] = s.m;
    v4[i] = s.v;
    param4[i] = s.w;
}

// torch.optim.SGD with momentum μ and dampening 0 (the buffer starts at zero, so the first
// step's μ·0 + g equals PyTorch's buf = g):
//   g ← g + wd·w;  buf ← μ·buf + g;  d ← g + μ·buf (Nesterov) or buf;  w ← w − lr·d
@compute @workgroup_size(256)
fn sgd_momentum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i >= p.n {
        return;
    }
    let w = param[i];
    let g = grad[i] + p.weight_decay * w;
    let buf = p.momentum * m[i] + g;
    m[i] = buf;
    param[i] = w - p.lr * select(buf, g + p.momentum * buf, NESTEROV);
}

// Plain SGD: w ← w − lr·(g + wd·w).
@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i < p.n {
        let w = param[i];
        param[i] = w - p.lr * (grad[i] + p.weight_decay * w);
    }
}
