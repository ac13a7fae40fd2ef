// Batch normalisation over the channels of x [B, C, S] (S = H·W; [B, F] is S = 1): statistics,
// affine normalisation and the backward pass. Launcher: src/kernels/batchnorm.rs; tests:
// kernels-tests/batchnorm.rs. Compiled after shaders/rows/lanes_*.wgsl (V, VU, VB, LANES, pick,
// total, lane_offsets).
//
// Channel c's values are the B segments (b·C + c)·S .. +S of x; value t of the channel
// (t = b·S + s) is split into chunks of p.chunk values, one invocation per (channel, chunk):
// enough invocations to fill the device at B·S = 6,272 or 25,088, few enough that a chunk's
// partial result is worth its merge. The V = vec4 variant (S ≥ 4, numel % 4 == 0) loads whole
// vec4 units: a reading pass takes the units that cover its values and masks the lanes outside;
// a writing pass owns the units whose FIRST element is one of its values, and gives the lanes
// that run past the segment (S % 4 ≠ 0, e.g. 7×7) the next channel's coefficients, so every
// unit is written exactly once. Loops stay far below lavapipe's 65,535 iterations per invocation
// because the host keeps a chunk at most 8,192 values long.
//
// Passes: train = stats, finalize, apply; eval = eval_coefs, apply;
//         backward = grad_stats, grad_finalize, apply (GRAD), each reading dy through dy_at
//         (batchnorm/backward_relu.wgsl masks it for a batch norm fused with its ReLU);
//         eval with a backward = eval_coefs_saving, apply; its backward = apply on dy (dx), and
//         grad_stats, grad_finalize (dγ, dβ).

struct Params {
    channels: u32,  // C
    spatial: u32,   // S, values per segment
    chunks: u32,    // invocations per channel
    chunk: u32,     // values per chunk (of the channel's B·S)
    count: u32,     // N = B·S values per channel
    eps: f32,
    momentum: f32,
    unbias: f32,    // N / (N − 1): biased to unbiased variance
}

@group(0) @binding(0) var<storage, read> x: array<V>;
@group(0) @binding(1) var<storage, read> dy: array<V>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> mean_in: array<f32>;     // running or saved mean
@group(0) @binding(5) var<storage, read> var_in: array<f32>;      // running variance
@group(0) @binding(6) var<storage, read> inv_std_in: array<f32>;  // saved 1/sqrt(σ² + eps)
@group(0) @binding(7) var<storage, read> partials: array<vec4<f32>>;  // [C, chunks]
@group(0) @binding(8) var<storage, read> coefs: array<vec4<f32>>;     // [C]
@group(0) @binding(9) var<storage, read_write> out: array<V>;         // y or dx
@group(0) @binding(10) var<storage, read_write> part_out: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> coef_out: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(13) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(14) var<storage, read_write> saved_mean: array<f32>;
@group(0) @binding(15) var<storage, read_write> saved_inv_std: array<f32>;
@group(0) @binding(16) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(17) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(18) var<uniform> p: Params;

// apply: out = (x − mean)·slope + offset + dy_scale·dy, the dy term only with GRAD (defined with
// dy_at by shaders/batchnorm/{forward,backward}.wgsl, compiled in front of this file).
// grad_finalize: add dγ, dβ to the gradient buffers instead of overwriting them.
override ACCUMULATE: bool = false;
// apply (forward): y = max(BN(x), 0), the ReLU after a batch norm fused into its last pass
// (max as elementwise.wgsl's ReLU, so the fused output is the unfused one bit for bit).
override RELU: bool = false;

const WG: u32 = 64u;

struct Ids {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
}

fn invocation(ids: Ids) -> u32 {
    // Linear workgroup id: grids above 65,535 workgroups are folded into y (and z).
    return (ids.wg.x + ids.wg.y * ids.nwg.x + ids.wg.z * ids.nwg.x * ids.nwg.y) * WG + ids.lid;
}

// One invocation's values t0..t1 of channel c; its chunk j indexes the partials ([C, chunks]).
struct Chunk {
    c: u32,
    t0: u32,
    t1: u32,
}

fn chunk_of(id: u32) -> Chunk {
    let c = id / p.chunks;
    let t0 = (id - c * p.chunks) * p.chunk;
    return Chunk(c, t0, min(p.count, t0 + p.chunk));
}

// The part of a segment a chunk covers: elements lo..hi of x; the segment ends at end.
struct Run {
    lo: u32,
    hi: u32,
    end: u32,
}

// Walks a chunk segment by segment: state (t, b, s) = (value, batch row, offset in segment).
struct Walk {
    t: u32,
    b: u32,
    s: u32,
}

fn walk_start(k: Chunk) -> Walk {
    let b = k.t0 / p.spatial;  // the only division of the walk
    return Walk(k.t0, b, k.t0 - b * p.spatial);
}

fn run_at(k: Chunk, w: Walk) -> Run {
    let e0 = (w.b * p.channels + k.c) * p.spatial;
    let lo = e0 + w.s;
    return Run(lo, lo + min(p.spatial - w.s, k.t1 - w.t), e0 + p.spatial);
}

fn walk_next(r: Run, w: Walk) -> Walk {
    return Walk(w.t + (r.hi - r.lo), w.b + 1u, 0u);
}

// The lanes of unit u whose element lies in lo..hi.
fn inside(u: u32, lo: u32, hi: u32) -> VB {
    let e = VU(u * LANES) + lane_offsets();
    return (e >= VU(lo)) & (e < VU(hi));
}

// Chan et al. 1979: merge of (count, mean, M2) summaries; exact in exact arithmetic and free of
// the cancellation of Σx² − (Σx)²/n, so a mean of 1000 beside a deviation of 1 keeps its digits.
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if b.x == 0.0 {
        return a;
    }
    let delta = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + delta * f, a.z + b.z + delta * delta * a.x * f);
}

// x -> part_out[c, j] = (count, mean − K, M2, K) of the chunk's values (Welford per lane, then
// Chan), K = the channel's first value: shifted by K the running mean stays of the size of σ,
// so its roundings scale with σ rather than with |μ| (mean 1000, std 1 keeps 7 more bits).
@compute @workgroup_size(WG)
fn stats(ids: Ids) {
    let id = invocation(ids);
    if id >= p.channels * p.chunks {
        return;
    }
    let k = chunk_of(id);
    let e = k.c * p.spatial;  // element 0 of the channel (batch row 0)
    let shift = pick(x[e / LANES], e % LANES);
    var n = V(0.0);
    var mean = V(0.0);
    var m2 = V(0.0);
    for (var w = walk_start(k); w.t < k.t1;) {
        let r = run_at(k, w);
        for (var u = r.lo / LANES; u * LANES < r.hi; u++) {
            // Welford 1962 with masked lanes: a lane outside the run leaves its summary as is.
            // (select, not a 0/1 weight: an inf next door must not become 0·inf = NaN here.)
            let m = inside(u, r.lo, r.hi);
            let v = select(mean, x[u] - shift, m);
            n += select(V(0.0), V(1.0), m);
            let d = v - mean;
            mean += d / max(n, V(1.0));
            m2 += d * (v - mean);
        }
        w = walk_next(r, w);
    }
    var acc = vec3<f32>(pick(n, 0u), pick(mean, 0u), pick(m2, 0u));
    for (var l = 1u; l < LANES; l++) {
        acc = merge(acc, vec3<f32>(pick(n, l), pick(mean, l), pick(m2, l)));
    }
    part_out[id] = vec4<f32>(acc, shift);
}

// Per channel: merge the chunks -> saved mean, inv_std; running statistics updated as PyTorch
// does (unbiased variance); coef_out = (mean, γ·inv_std, β, 0) for apply.
@compute @workgroup_size(WG)
fn finalize(ids: Ids) {
    let c = invocation(ids);
    if c >= p.channels {
        return;
    }
    var acc = partials[c * p.chunks].xyz;
    for (var j = 1u; j < p.chunks; j++) {
        acc = merge(acc, partials[c * p.chunks + j].xyz);
    }
    let mean = partials[c * p.chunks].w + acc.y;
    let variance = acc.z / acc.x;  // biased: what the batch is normalised with
    let inv_std = 1.0 / sqrt(variance + p.eps);
    saved_mean[c] = mean;
    saved_inv_std[c] = inv_std;
    let m = p.momentum;
    running_mean[c] = m * mean + (1.0 - m) * running_mean[c];
    running_var[c] = m * (variance * p.unbias) + (1.0 - m) * running_var[c];
    coef_out[c] = vec4<f32>(mean, gamma[c] * inv_std, beta[c], 0.0);
}

// Eval: coef_out = (running mean, γ/sqrt(running var + eps), β, 0).
@compute @workgroup_size(WG)
fn eval_coefs(ids: Ids) {
    let c = invocation(ids);
    if c < p.channels {
        coef_out[c] = vec4<f32>(mean_in[c], gamma[c] / sqrt(var_in[c] + p.eps), beta[c], 0.0);
    }
}

// out = (x − mean)·slope + offset (+ dy_scale·dy with GRAD), coefficients per channel. x − mean
// first: with a mean of 1000 the product x·slope would round away the digits that matter.
@compute @workgroup_size(WG)
fn apply(ids: Ids) {
    let id = invocation(ids);
    if id >= p.channels * p.chunks {
        return;
    }
    let k = chunk_of(id);
    let here = coefs[k.c];
    let next = coefs[select(k.c + 1u, 0u, k.c + 1u == p.channels)];
    for (var w = walk_start(k); w.t < k.t1;) {
        let r = run_at(k, w);
        // Units owned: those whose first element is in lo..hi.
        for (var u = (r.lo + LANES - 1u) / LANES; u * LANES < r.hi; u++) {
            // Lanes past the segment's end belong to the next channel (only when S % 4 ≠ 0).
            let m = inside(u, 0u, r.end);
            let mean = select(V(next.x), V(here.x), m);
            let slope = select(V(next.y), V(here.y), m);
            var v = (x[u] - mean) * slope + select(V(next.z), V(here.z), m);
            if GRAD {
                v += select(V(next.w), V(here.w), m) * dy_at(u);
            } else if RELU {
                v = max(v, V(0.0));
            }
            out[u] = v;
        }
        w = walk_next(r, w);
    }
}

// dy, x -> part_out[c, j] = (Σ dy, Σ dy·x̂, 0, 0) over the chunk, x̂ = (x − mean)·inv_std.
// Each segment's sums are added apart first (a block sum: shorter chains of f32 roundings).
@compute @workgroup_size(WG)
fn grad_stats(ids: Ids) {
    let id = invocation(ids);
    if id >= p.channels * p.chunks {
        return;
    }
    let k = chunk_of(id);
    let mean = mean_in[k.c];
    var sum_dy = V(0.0);
    var sum_dyx = V(0.0);
    for (var w = walk_start(k); w.t < k.t1;) {
        let r = run_at(k, w);
        var run_dy = V(0.0);
        var run_dyx = V(0.0);
        for (var u = r.lo / LANES; u * LANES < r.hi; u++) {
            let m = inside(u, r.lo, r.hi);
            let g = select(V(0.0), dy_at(u), m);
            run_dy += g;
            run_dyx += g * (select(V(mean), x[u], m) - mean);
        }
        sum_dy += run_dy;
        sum_dyx += run_dyx;
        w = walk_next(r, w);
    }
    part_out[id] = vec4<f32>(total(sum_dy), total(sum_dyx) * inv_std_in[k.c], 0.0, 0.0);
}

// Per channel: dβ = Σ dy, dγ = Σ dy·x̂ (written or added), and apply's coefficients for
//   dx = γ·inv_std/N · (N·dy − dβ − x̂·dγ)
//      = (x − mean)·(−a·inv_std·dγ/N) + (−a·dβ/N) + a·dy,   a = γ·inv_std.
@compute @workgroup_size(WG)
fn grad_finalize(ids: Ids) {
    let c = invocation(ids);
    if c >= p.channels {
        return;
    }
    var sums = vec2<f32>(0.0);
    for (var j = 0u; j < p.chunks; j++) {
        sums += partials[c * p.chunks + j].xy;
    }
    let inv_std = inv_std_in[c];
    let a = gamma[c] * inv_std;
    let per = a / f32(p.count);
    coef_out[c] = vec4<f32>(mean_in[c], -per * inv_std * sums.y, -per * sums.x, a);
    if ACCUMULATE {
        dbeta[c] += sums.x;
        dgamma[c] += sums.y;
    } else {
        dbeta[c] = sums.x;
        dgamma[c] = sums.y;
    }
}

// Eval forward that keeps what its backward needs (a frozen network inside a loss wants dx; a
// trainable γ, β want dγ, dβ): coef_out as eval_coefs, saved_mean = running mean and
// saved_inv_std = 1/sqrt(running var + eps) as read now (grad_stats and grad_finalize take
// them as the training backward takes the batch's), and part_out[c] = (0, slope, 0, 0):
// apply's coefficients for dx = slope·dy = γ/sqrt(running var + eps)·dy, run on dy as its x.
// The slope is the forward's own, so dx is exactly ∂y/∂x·dy with y's rounding of the slope.
@compute @workgroup_size(WG)
fn eval_coefs_saving(ids: Ids) {
    let c = invocation(ids);
    if c >= p.channels {
        return;
    }
    let sd = sqrt(var_in[c] + p.eps);
    let slope = gamma[c] / sd;
    coef_out[c] = vec4<f32>(mean_in[c], slope, beta[c], 0.0);
    part_out[c] = vec4<f32>(0.0, slope, 0.0, 0.0);
    saved_mean[c] = mean_in[c];
    saved_inv_std[c] = 1.0 / sd;
}
