// Per-example losses and their gradients, rows = examples: BCE with logits, Gaussian NLL and
// cross entropy with logits. Launcher: src/kernels/losses.rs; tests: kernels-tests/losses.rs.
//
// Compiled after shaders/rows/ (lane type V, Params, bindings, span). A forward writes one sum
// per row piece (the launcher adds the pieces of rows longer than one); a backward is one pass
// writing w·∂loss/∂input, w the row's weight (the gradient of the caller's loss w.r.t. the row's).

const LOG_2PI: f32 = 1.8378770664093453;

// BCE of logit l against a target x in [0, 1] (not only {0, 1}):
//   −x·log σ(l) − (1 − x)·log(1 − σ(l)) = max(l, 0) − l·x + log(1 + exp(−|l|)),
// where exp of a non-positive number never overflows and log's argument is in [1, 2].
fn bce_terms(l: V, x: V) -> V {
    return max(l, V(0.0)) - l * x + log(1.0 + exp(-abs(l)));
}

// σ(l) = 1/(1 + e) for l ≥ 0, e/(1 + e) below, with e = exp(−|l|): no overflow either.
fn sigmoid(l: V) -> V {
    let e = exp(-abs(l));
    return select(e, V(1.0), l >= V(0.0)) / (1.0 + e);
}

// a = logits, b = targets -> sums.
@compute @workgroup_size(WG)
fn bce_with_logits(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    var acc = V(0.0);
    for (var i = s.begin; i < s.end; i++) {
        acc += bce_terms(a[i], b[i]);
    }
    sums[s.id] = total(acc);
}

// a = logits, b = targets -> o0 = w·(σ(l) − x).
@compute @workgroup_size(WG)
fn bce_with_logits_backward(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    let w = weight(s.row);
    for (var i = s.begin; i < s.end; i++) {
        o0[i] = w * (sigmoid(a[i]) - b[i]);
    }
}

// Soft targets (a target that is itself computed, e.g. a decoder's output): ∂BCE/∂x = −l, the
// logit alone, for any x. a = logits -> o0 = −w·l (the targets are not read).
@compute @workgroup_size(WG)
fn bce_with_logits_backward_target(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    let w = weight(s.row);
    for (var i = s.begin; i < s.end; i++) {
        o0[i] = -w * a[i];
    }
}

// Both gradients in one pass: a = logits, b = targets -> o0 = w·(σ(l) − x), o1 = −w·l.
@compute @workgroup_size(WG)
fn bce_with_logits_backward_both(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    let w = weight(s.row);
    for (var i = s.begin; i < s.end; i++) {
        let l = a[i];
        o0[i] = w * (sigmoid(l) - b[i]);
        o1[i] = -w * l;
    }
}

// −log N(x; μ, σ²) = ½ (log 2π + log σ² + (x − μ)²/σ²), with 1/σ² = exp(−log σ²) so that
// log σ² = −30 (σ² = 1e-13) gives large but exact-in-form terms, never 0/0.
// a = x, b = μ, c = log σ² -> sums.
@compute @workgroup_size(WG)
fn gaussian_nll(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    var acc = V(0.0);
    for (var i = s.begin; i < s.end; i++) {
        let logvar = c[i];
        let r = a[i] - b[i];
        acc += 0.5 * (LOG_2PI + logvar + r * r * exp(-logvar));
    }
    sums[s.id] = total(acc);
}

// o0 = dμ = w·(μ − x)/σ², o1 = d log σ² = ½w(1 − (x − μ)²/σ²).
@compute @workgroup_size(WG)
fn gaussian_nll_backward(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    let w = weight(s.row);
    for (var i = s.begin; i < s.end; i++) {
        let r = a[i] - b[i];
        let t = w * r * exp(-c[i]);
        o0[i] = -t;
        o1[i] = 0.5 * (w - t * r);
    }
}

// Cross entropy of a row of logits against its label k: logsumexp(row) − row[k], with
// logsumexp = m + log Σ exp(v − m), m the row's max (max-shifted: exp never overflows, and
// m − row[k] is exact). Rows of at most one piece get (m, log Σ) from two loops here; longer
// rows read them from `stats` (the `_stats` entry points), computed by reduce.wgsl in as many
// passes as needed.
// A label ≥ C gives a NaN loss and a NaN gradient row: the labels live on the GPU, so the host
// cannot check them without waiting, and NaN cannot be mistaken for a trained value.
struct Lse {
    m: f32,
    log_sum: f32,
}

fn stats_lse(row: u32) -> Lse {
    return Lse(stats[2u * row], stats[2u * row + 1u]);
}

fn row_lse(row: u32) -> Lse {
    let begin = row * p.cols;
    let end = begin + p.cols;
    var m = vmax(a[begin]);
    for (var i = begin + 1u; i < end; i++) {
        m = max(m, vmax(a[i]));
    }
    var acc = V(0.0);
    for (var i = begin; i < end; i++) {
        acc += exp(a[i] - m);
    }
    return Lse(m, log(total(acc)));
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// The loss of row s.row given its log-sum-exp.
fn cross_entropy_row(s: Span, lse: Lse) {
    let k = labels[s.row];
    if k >= p.classes {
        sums[s.id] = nan();
        return;
    }
    sums[s.id] = (lse.m - pick(a[s.row * p.cols + k / LANES], k % LANES)) + lse.log_sum;
}

// a = logits, labels -> sums (one invocation per row).
@compute @workgroup_size(WG)
fn cross_entropy_logits(ids: Ids) {
    let s = span(ids);
    if s.row < p.rows {
        cross_entropy_row(s, row_lse(s.row));
    }
}

// The same with the rows' statistics from `stats`.
@compute @workgroup_size(WG)
fn cross_entropy_logits_stats(ids: Ids) {
    let s = span(ids);
    if s.row < p.rows {
        cross_entropy_row(s, stats_lse(s.row));
    }
}

// o0 = w·(softmax(row) − onehot(k)) over the piece, softmax = exp((v − m) − log Σ).
fn cross_entropy_grad(s: Span, lse: Lse) {
    let k = labels[s.row];
    let w = select(weight(s.row), nan(), k >= p.classes);
    let first = s.row * p.cols;
    for (var i = s.begin; i < s.end; i++) {
        o0[i] = w * (exp((a[i] - lse.m) - lse.log_sum) - hot(i - first, k));
    }
}

@compute @workgroup_size(WG)
fn cross_entropy_logits_backward(ids: Ids) {
    let s = span(ids);
    if s.row < p.rows {
        cross_entropy_grad(s, row_lse(s.row));
    }
}

// The same with the rows' statistics from `stats`.
@compute @workgroup_size(WG)
fn cross_entropy_logits_stats_backward(ids: Ids) {
    let s = span(ids);
    if s.row < p.rows {
        cross_entropy_grad(s, stats_lse(s.row));
    }
}
