// The gated activation of the gated PixelCNN (van den Oord et al. 2016, eq. 2 and 4-5), fused
// with its conditioning: y = tanh(a + ca)·σ(b + cb), and its gradient. Tests: kernels-tests/gated.rs.
//
// x [B, 2p, P] holds the pre-activations a (channels 0..p) and b (channels p..2p) over P
// positions; the condition c is absent, one value per image and channel ([B, 2p]: a class
// embedding) or a map like x ([B, 2p, P]: a spatial condition). Composed from the elementwise
// kernels this is two slices, a broadcast add, tanh, σ and a product forward and about fifteen
// kernels backward, each a full pass over memory; here it is one pass each way.

struct Params {
    p: u32,          // output channels (half of x's)
    positions: u32,  // P
    total: u32,      // invocations with work: B·p
    _pad: u32,
}

// Compiled after shaders/gated/plain.wgsl (no condition) or shaders/gated/cond.wgsl (COND,
// the bindings cond and dcond, cond_at and write_dcond).

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;             // backward: ∂L/∂y [B, p, P]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;       // y, or ∂L/∂x [B, 2p, P]
@group(0) @binding(5) var<uniform> prm: Params;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * 64u + lid;
}

fn sigmoid(v: f32) -> f32 {
    // exp of a non-positive number never overflows.
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

// tanh is exactly ±1 in f32 beyond |v| = 9; clamping avoids inf/inf in some drivers.
fn tanh_c(v: f32) -> f32 {
    return tanh(clamp(v, -15.0, 15.0));
}

// Row r = (b, c) of the output: the offsets of a's and b's rows in x, and of the per-channel
// condition of a (b's is p further).
struct Row { a: u32, b: u32, c: u32 }

fn row(r: u32) -> Row {
    let img = r / prm.p;
    let ch = r % prm.p;
    let c = img * 2u * prm.p + ch;
    return Row(c * prm.positions, (c + prm.p) * prm.positions, c);
}

// The two conditioned pre-activations at position q of row w (per-channel terms in cab).
fn pre(w: Row, q: u32, cab: vec2<f32>) -> vec2<f32> {
    var v = vec2(x[w.a + q], x[w.b + q]) + cab;
    if (COND == 2u) { v += vec2(cond_at(w.a + q), cond_at(w.b + q)); }
    return v;
}

fn channel_terms(w: Row) -> vec2<f32> {
    if (COND == 1u) { return vec2(cond_at(w.c), cond_at(w.c + prm.p)); }
    return vec2(0.0);
}

// x [B, 2p, P] (+ c) -> y [B, p, P]. One invocation per output row (b, c) walks its P
// positions (the row is decomposed once: integer division is a per-lane loop on lavapipe).
@compute @workgroup_size(64)
fn gated_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = index(wg, nwg, lid);
    if (r >= prm.total) { return; }
    let w = row(r);
    let cab = channel_terms(w);
    let out = r * prm.positions;
    for (var q = 0u; q < prm.positions; q++) {
        let v = pre(w, q, cab);
        y[out + q] = tanh_c(v.x) * sigmoid(v.y);
    }
}

// ∂L/∂a = g·σ(b)·(1 − tanh²(a)), ∂L/∂b = g·tanh(a)·σ(b)·(1 − σ(b)) (recomputed from x and c,
// nothing saved); ∂L/∂c is the same, summed over the positions for a per-channel c.
@compute @workgroup_size(64)
fn gated_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = index(wg, nwg, lid);
    if (r >= prm.total) { return; }
    let w = row(r);
    let cab = channel_terms(w);
    let out = r * prm.positions;
    var sum = vec2(0.0);
    for (var q = 0u; q < prm.positions; q++) {
        let v = pre(w, q, cab);
        let t = tanh_c(v.x);
        let s = sigmoid(v.y);
        let gq = g[out + q];
        let d = vec2(gq * s * (1.0 - t * t), gq * t * s * (1.0 - s));
        y[w.a + q] = d.x;
        y[w.b + q] = d.y;
        if (COND == 2u) { write_dcond(w.a + q, d.x); write_dcond(w.b + q, d.y); }
        sum += d;
    }
    if (COND == 1u) { write_dcond(w.c, sum.x); write_dcond(w.c + prm.p, sum.y); }
}
