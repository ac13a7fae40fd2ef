// Vector quantisation (van den Oord et al. 2017) without subgroups: code norms, argmin over a distance
// matrix, per-code cluster sums, histogram and usage, loss gradients, EMA codebook and dead-code reset.
// Launcher: src/kernels/vq.rs; tests: kernels-tests/vq.rs. Compiled after vq/lanes_f32.wgsl or
// vq/lanes_vec4.wgsl (argmin_row, z4_at: scalar or vec4 loads) with vq/clusters.wgsl appended;
// the fused search is vq/search.wgsl.
//
// Rows z [N, D], codebook e [K, D], codes u32 [N]. Distances are fma(−2, z·e, ‖e‖²) as in
// vq/search.wgsl; the matrix `dist` that `vq_argmin` reads holds them already (the launcher builds it
// as z·(−2e)ᵀ + ‖e‖² with the matmul, which rounds to the same value: scaling by −2 is exact).

struct Params {
    n: u32, k: u32, d: u32,
    count: u32,        // invocations that have work
    row_begin: u32,    // cluster sums: rows of this pass
    row_end: u32,
    accumulate: u32,   // 1: add to the output instead of overwriting it
    threshold: u32,    // reset: steps unused before a code is re-initialised
    scale: f32, decay: f32, eps: f32,
    chunks: u32,       // cluster sums: chunks of CHUNK rows in this pass
}

// Inputs (read-only), then outputs, then the params: each entry point binds the ones it uses.
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> z4: array<vec4<f32>>;      // z in vec4s, D % 4 == 0 (lanes_vec4.wgsl)
@group(0) @binding(2) var<storage, read> e: array<f32>;
@group(0) @binding(3) var<storage, read> dist: array<f32>;
@group(0) @binding(4) var<storage, read> dist4: array<vec4<f32>>;   // dist in vec4s, K % 4 == 0 (lanes_vec4.wgsl)
@group(0) @binding(5) var<storage, read> idx: array<u32>;
@group(0) @binding(6) var<storage, read> zq: array<f32>;
@group(0) @binding(7) var<storage, read> counts: array<u32>;
@group(0) @binding(8) var<storage, read> sums: array<f32>;          // cluster sums, or EMA m
@group(0) @binding(9) var<storage, read> sizes: array<f32>;         // EMA cluster sizes
@group(0) @binding(10) var<storage, read> scalar: array<f32>;       // [1]: upstream gradient or total
@group(0) @binding(11) var<storage, read> rows: array<u32>;
@group(0) @binding(12) var<storage, read> idle_in: array<u32>;
@group(0) @binding(13) var<storage, read> scan_in: array<u32>;      // clusters.wgsl's scan
@group(0) @binding(14) var<storage, read> order_in: array<u32>;     // clusters.wgsl's order
@group(0) @binding(15) var<storage, read_write> indices_out: array<u32>;
@group(0) @binding(16) var<storage, read_write> zq_out: array<f32>;
@group(0) @binding(17) var<storage, read_write> err_out: array<f32>;
@group(0) @binding(18) var<storage, read_write> counts_out: array<u32>;
@group(0) @binding(19) var<storage, read_write> sums_out: array<f32>;
@group(0) @binding(20) var<storage, read_write> hist: array<atomic<u32>>;
@group(0) @binding(21) var<storage, read_write> epoch: array<u32>;
@group(0) @binding(22) var<storage, read_write> idle: array<u32>;
@group(0) @binding(23) var<storage, read_write> grad: array<f32>;
@group(0) @binding(24) var<storage, read_write> ema_size: array<f32>;
@group(0) @binding(25) var<storage, read_write> ema_sum: array<f32>;
@group(0) @binding(26) var<storage, read_write> codebook: array<f32>;
@group(0) @binding(27) var<storage, read_write> norms_out: array<f32>;
@group(0) @binding(28) var<storage, read_write> table: array<u32>;  // clusters.wgsl's chunk counts
@group(0) @binding(29) var<storage, read_write> scan: array<u32>;
@group(0) @binding(30) var<storage, read_write> order: array<u32>;
@group(0) @binding(31) var<uniform> p: Params;

override UNIFORM: bool = false;  // reset: `rows` holds f32 uniforms u, the row is ⌊u·N⌋

fn linear(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * 64u + lid;
}

// norms [K]: ‖e_k‖² as one fma chain over d in order (vq/search.wgsl's chain).
@compute @workgroup_size(64)
fn vq_norms(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let k = linear(wg, nwg, lid);
    if (k >= p.k) { return; }
    var s = 0.0;
    for (var d = 0u; d < p.d; d++) { let v = e[k * p.d + d]; s = fma(v, v, s); }
    norms_out[k] = s;
}

// indices [N] from dist [N, K].
@compute @workgroup_size(64)
fn vq_argmin(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = linear(wg, nwg, lid);
    if (row >= p.n) { return; }
    indices_out[row] = argmin_row(row);
}

// indices [N], z_q [N, D] = e[code] and err [N] = Σ_d (z − z_q)² (fma chain in order).
@compute @workgroup_size(64)
fn vq_argmin_quantize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let row = linear(wg, nwg, lid);
    if (row >= p.n) { return; }
    let code = argmin_row(row);
    indices_out[row] = code;
    var s = 0.0;
    for (var d = 0u; d < p.d; d++) {
        let v = e[code * p.d + d];
        zq_out[row * p.d + d] = v;
        let t = z[row * p.d + d] - v;
        s = fma(t, t, s);
    }
    err_out[row] = s;
}

// hist [K] += the number of rows of each code (codes >= K are ignored).
@compute @workgroup_size(64)
fn vq_histogram(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= p.n) { return; }
    let c = idx[i];
    if (c < p.k) { atomicAdd(&hist[c], 1u); }
}

// A step's counts: epoch [K] += counts; idle [K] = steps since the code was last used.
@compute @workgroup_size(64)
fn vq_usage(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let k = linear(wg, nwg, lid);
    if (k >= p.k) { return; }
    let c = counts[k];
    epoch[k] += c;
    idle[k] = select(min(idle[k], 0xfffffffeu) + 1u, 0u, c > 0u);
}

fn put_grad(i: u32, v: f32) {
    var s = v;
    if (p.accumulate != 0u) { s += grad[i]; }
    grad[i] = s;
}

// grad [K, D] = g·scale·(count_k·e_k − Σ_{n of k} z_n): the codebook loss Σ_n ‖sg[z_n] − e_{code n}‖²
// differentiated (scale = 2·weight / (N·D) for a mean).
@compute @workgroup_size(64)
fn vq_codebook_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= p.count) { return; }
    put_grad(i, scalar[0] * p.scale * fma(f32(counts[i / p.d]), e[i], -sums[i]));
}

// grad [N, D] = g·scale·(z − z_q): the commitment loss Σ ‖z − sg[z_q]‖² differentiated.
@compute @workgroup_size(64)
fn vq_commitment_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = linear(wg, nwg, lid);
    if (i >= p.count) { return; }
    put_grad(i, scalar[0] * p.scale * (z[i] - zq[i]));
}

// EMA statistics (van den Oord et al. 2017, appendix A.1): N_k ← γN_k + (1 − γ)n_k and
// m_k ← γm_k + (1 − γ)Σ_{n of k} z_n, one code per invocation.
@compute @workgroup_size(64)
fn vq_ema_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let k = linear(wg, nwg, lid);
    if (k >= p.k) { return; }
    let w = 1.0 - p.decay;
    ema_size[k] = fma(p.decay, ema_size[k], w * f32(counts[k]));
    for (var d = 0u; d < p.d; d++) {
        let i = k * p.d + d;
        ema_sum[i] = fma(p.decay, ema_sum[i], w * sums[i]);
    }
}

// e_k = m_k / Ñ_k with Laplace smoothing Ñ_k = (N_k + ε) / (n + K·ε) · n, n = Σ_k N_k (`scalar`).
@compute @workgroup_size(64)
fn vq_ema_codebook(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let k = linear(wg, nwg, lid);
    if (k >= p.k) { return; }
    let n = scalar[0];
    let smoothed = (sizes[k] + p.eps) / (n + f32(p.k) * p.eps) * n;
    for (var d = 0u; d < p.d; d++) { codebook[k * p.d + d] = sums[k * p.d + d] / smoothed; }
}

// The row of z that code k would be reset to.
fn source_row(k: u32) -> u32 {
    if (UNIFORM) { return min(u32(bitcast<f32>(rows[k]) * f32(p.n)), p.n - 1u); }
    return min(rows[k], p.n - 1u);
}

// Dead-code reset: a code unused for `threshold` steps becomes a row of z, and its count restarts.
@compute @workgroup_size(64)
fn vq_reset(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let k = linear(wg, nwg, lid);
    if (k >= p.k || idle[k] < p.threshold) { return; }
    let src = source_row(k) * p.d;
    for (var d = 0u; d < p.d; d++) { codebook[k * p.d + d] = z[src + d]; }
    idle[k] = 0u;
}

// The EMA state of the codes vq_reset is about to reset (run before it): N_k = 1, m_k = the new code.
@compute @workgroup_size(64)
fn vq_reset_ema(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let k = linear(wg, nwg, lid);
    if (k >= p.k || idle_in[k] < p.threshold) { return; }
    let src = source_row(k) * p.d;
    ema_size[k] = 1.0;
    for (var d = 0u; d < p.d; d++) { ema_sum[k * p.d + d] = z[src + d]; }
}
