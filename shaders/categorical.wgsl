// Categorical maps for autoregressive models: one-hot maps of u32 codes, and one sampling step
// of a batch of code maps, all on the GPU. Tests: kernels-tests/categorical.rs.
//
// A PixelCNN samples its H·W positions one at a time, each from the logits the whole network
// computes on the codes drawn so far; the step below turns those logits into a code and writes
// it both into the u32 code map and into the one-hot map the network reads next, so a whole
// sample needs no host readback.

struct Params {
    k: u32,          // categories
    p: u32,          // positions per image (the trailing axes of the code map)
    total: u32,      // invocations with work
    pos: u32,        // sample: the position drawn in this step
    u_offset: u32,   // sample: the uniform of image b is u[u_offset + b]
    inv_temp: f32,   // sample: 1 / temperature
    rows: u32,       // sample: logit rows per image (P, or fewer when the rows below were cropped)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> codes_in: array<u32>;       // one_hot
@group(0) @binding(0) var<storage, read> logits: array<f32>;         // sample: [B·rows, K]
@group(0) @binding(1) var<storage, read> u: array<f32>;              // sample: uniforms in [0, 1)
@group(0) @binding(2) var<storage, read_write> codes: array<u32>;    // sample: [B, P]
@group(0) @binding(3) var<storage, read_write> map: array<f32>;      // [B, K, P]
@group(0) @binding(4) var<uniform> p: Params;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * 64u + lid;
}

// Column `q` of image b in the one-hot map set to the indicator of `code` (all zeros for a
// code ≥ K, which cannot be reported from the GPU).
fn write_column(b: u32, q: u32, code: u32) {
    var i = b * p.k * p.p + q;
    for (var k = 0u; k < p.k; k++) {
        map[i] = select(0.0, 1.0, k == code);
        i += p.p;
    }
}

// codes_in: u32 [B, P] -> map: f32 [B, K, P]. One invocation per code; T = B·P.
@compute @workgroup_size(64)
fn categorical_one_hot(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let m = index(wg, nwg, lid);
    if (m >= p.total) { return; }
    write_column(m / p.p, m % p.p, codes_in[m]);
}

// One sampling step at position `pos` of every image: code ~ softmax(logits[b·rows + pos] / τ) by
// inverse CDF with u[u_offset + b] (the first code whose running sum of exp exceeds u·Σ exp,
// max-shifted; rounding can leave u·Σ at the very end, then the last code of nonzero weight is
// taken), written to codes[b, pos] and as a one-hot column of map. One invocation per image;
// T = B.
@compute @workgroup_size(64)
fn categorical_sample(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let b = index(wg, nwg, lid);
    if (b >= p.total) { return; }
    let row = (b * p.rows + p.pos) * p.k;
    // Online max and Σ exp((l − max)/τ) in one pass (rescaled when the max grows).
    var mx = logits[row] * p.inv_temp;
    var sum = 1.0;
    for (var k = 1u; k < p.k; k++) {
        let v = logits[row + k] * p.inv_temp;
        if (v > mx) {
            sum = sum * exp(mx - v) + 1.0;
            mx = v;
        } else {
            sum += exp(v - mx);
        }
    }
    let goal = u[p.u_offset + b] * sum;
    var acc = 0.0;
    var code = p.k;
    var last = 0u;
    for (var k = 0u; k < p.k; k++) {
        let e = exp(logits[row + k] * p.inv_temp - mx);
        if (e > 0.0) { last = k; }
        acc += e;
        if (acc > goal) { code = k; break; }
    }
    code = select(code, last, code == p.k);
    codes[b * p.p + p.pos] = code;
    write_column(b, p.pos, code);
}
