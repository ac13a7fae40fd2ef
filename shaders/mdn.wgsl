// Mixture density network loss with K isotropic components of one fixed σ (Deshpande et al.
// 2017, §4): per row, the loss of a code z under means μ_k and mixture logits l_k, and its
// gradient. Launcher: src/kernels/mdn.rs; CPU twin and tests: kernels-tests/mdn.rs.
//
// d_k = ‖z − μ_k‖² / (2σ²), log π_k = l_k − logsumexp(l).
//   closest (MODE 0): k* = argmin d_k (first on ties), loss = d_k* − log π_k*, r = one-hot(k*)
//   likelihood (MODE 1): a_k = log π_k − d_k, loss = −logsumexp(a) + log_norm, r = softmax(a)
// Backward, for an upstream weight g per row: dμ_k = g·r_k·(μ_k − z)/σ², dl_k = g·(π_k − r_k).
// The code gets no gradient: the MDN regresses a fixed code.

struct Params {
    rows: u32,
    k: u32,
    d: u32,
    mode: u32,
    inv_var: f32,   // 1/σ²
    log_norm: f32,  // ½·D·log(2πσ²) in MODE 1, else 0
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> means: array<f32>;         // [rows, K, D]
@group(0) @binding(1) var<storage, read> logits: array<f32>;        // [rows, K]
@group(0) @binding(2) var<storage, read> code: array<f32>;        // [rows, D]
@group(0) @binding(3) var<storage, read> g: array<f32>;             // [rows]
@group(0) @binding(4) var<storage, read> resp: array<f32>;          // [rows, K]
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;    // [rows]
@group(0) @binding(6) var<storage, read_write> resp_out: array<f32>;// [rows, K]
@group(0) @binding(7) var<storage, read_write> dmeans: array<f32>;  // [rows, K, D]
@group(0) @binding(8) var<storage, read_write> dlogits: array<f32>; // [rows, K]
@group(0) @binding(9) var<uniform> p: Params;

const WG: u32 = 64u;

fn row_of(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    // Linear workgroup id: grids above 65,535 workgroups are folded into y (and z).
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

// d_k = ‖z − μ_k‖²/(2σ²) of row `row`.
fn half_dist(row: u32, k: u32) -> f32 {
    let m0 = (row * p.k + k) * p.d;
    let z0 = row * p.d;
    var acc = 0.0;
    for (var j = 0u; j < p.d; j++) {
        let e = code[z0 + j] - means[m0 + j];
        acc = fma(e, e, acc);
    }
    return 0.5 * p.inv_var * acc;
}

// logsumexp of the row's logits, max-shifted.
fn logits_lse(row: u32) -> f32 {
    let l0 = row * p.k;
    var m = logits[l0];
    for (var k = 1u; k < p.k; k++) {
        m = max(m, logits[l0 + k]);
    }
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) {
        s += exp(logits[l0 + k] - m);
    }
    return m + log(s);
}

@compute @workgroup_size(WG)
fn mdn_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wg, nwg, lid);
    if row >= p.rows {
        return;
    }
    let l0 = row * p.k;
    let lse = logits_lse(row);
    if p.mode == 0u {
        var best = 0u;
        var best_d = half_dist(row, 0u);
        for (var k = 1u; k < p.k; k++) {
            let dk = half_dist(row, k);
            if dk < best_d {
                best = k;
                best_d = dk;
            }
        }
        for (var k = 0u; k < p.k; k++) {
            resp_out[l0 + k] = select(0.0, 1.0, k == best);
        }
        loss[row] = best_d - (logits[l0 + best] - lse);
        return;
    }
    // a_k kept in resp_out, then normalised in place.
    var m = -3.4e38;
    for (var k = 0u; k < p.k; k++) {
        let a = (logits[l0 + k] - lse) - half_dist(row, k);
        resp_out[l0 + k] = a;
        m = max(m, a);
    }
    var s = 0.0;
    for (var k = 0u; k < p.k; k++) {
        s += exp(resp_out[l0 + k] - m);
    }
    let total = m + log(s);
    for (var k = 0u; k < p.k; k++) {
        resp_out[l0 + k] = exp(resp_out[l0 + k] - total);
    }
    loss[row] = p.log_norm - total;
}

@compute @workgroup_size(WG)
fn mdn_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wg, nwg, lid);
    if row >= p.rows {
        return;
    }
    let l0 = row * p.k;
    let z0 = row * p.d;
    let w = g[row];
    let lse = logits_lse(row);
    for (var k = 0u; k < p.k; k++) {
        let r = resp[l0 + k];
        dlogits[l0 + k] = w * (exp(logits[l0 + k] - lse) - r);
        let m0 = (l0 + k) * p.d;
        let c = w * r * p.inv_var;
        for (var j = 0u; j < p.d; j++) {
            dmeans[m0 + j] = c * (means[m0 + j] - code[z0 + j]);
        }
    }
}
