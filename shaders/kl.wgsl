// Diagonal-Gaussian kernels of a VAE's latent layer, rows = examples: z = μ + σ·ε, the KL
// divergences, the Ladder VAE's precision-weighted merge and their gradients. Launcher: src/kernels/kl.rs; tests: kernels-tests/kl.rs.
//
// Compiled after shaders/rows/ (lane type V, Params, bindings a..d, g, o0..o3, sums, span).
// Inputs are μ and log σ²; σ = exp(½ log σ²), and σ² = σ·σ so one exp serves both.
// KL(N(μ, σ²) ‖ N(0, 1)) = −½ (1 + log σ² − μ² − σ²)  (Kingma & Welling 2014, appendix B).

fn sigma(logvar: V) -> V {
    return exp(0.5 * logvar);
}

// Per-dimension KL(N(μ, σ²) ‖ N(0, 1)), with variance = σ².
fn kl_std_terms(mu: V, logvar: V, variance: V) -> V {
    return -0.5 * (1.0 + logvar - mu * mu - variance);
}

// a = μ, b = log σ², c = ε -> o0 = z = μ + σ·ε.
@compute @workgroup_size(WG)
fn reparameterize(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    for (var i = s.begin; i < s.end; i++) {
        o0[i] = fma(sigma(b[i]), c[i], a[i]);
    }
}

// a = μ, b = log σ² -> sums = Σ_d KL(N(μ_d, σ_d²) ‖ N(0, 1)) over the piece.
@compute @workgroup_size(WG)
fn kl_std_normal(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    var acc = V(0.0);
    for (var i = s.begin; i < s.end; i++) {
        let logvar = b[i];
        let sd = sigma(logvar);
        acc += kl_std_terms(a[i], logvar, sd * sd);
    }
    sums[s.id] = total(acc);
}

// The VAE's forward in one pass: a = μ, b = log σ², c = ε -> o0 = z, sums = KL to N(0, I).
@compute @workgroup_size(WG)
fn reparameterize_kl(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    var acc = V(0.0);
    for (var i = s.begin; i < s.end; i++) {
        let mu = a[i];
        let logvar = b[i];
        let sd = sigma(logvar);
        o0[i] = fma(sd, c[i], mu);
        acc += kl_std_terms(mu, logvar, sd * sd);
    }
    sums[s.id] = total(acc);
}

// b = log σ², c = ε, d = dz -> o0 = dμ = dz, o1 = d log σ² = dz·ε·½σ
// (∂z/∂μ = 1, ∂z/∂log σ² = ½σε).
@compute @workgroup_size(WG)
fn reparameterize_backward(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    for (var i = s.begin; i < s.end; i++) {
        let dz = d[i];
        o0[i] = dz;
        o1[i] = 0.5 * (dz * c[i] * sigma(b[i]));
    }
}

// a = μ, b = log σ², row weight w -> o0 = dμ = w·μ, o1 = d log σ² = w·½(σ² − 1).
@compute @workgroup_size(WG)
fn kl_std_normal_backward(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    let w = weight(s.row);
    for (var i = s.begin; i < s.end; i++) {
        let sd = sigma(b[i]);
        o0[i] = w * a[i];
        o1[i] = 0.5 * (w * (sd * sd - 1.0));
    }
}

// Both in one pass: a = μ, b = log σ², c = ε, d = dz, row weight w ->
//   o0 = dμ = dz + w·μ,  o1 = d log σ² = dz·ε·½σ + w·½(σ² − 1).
@compute @workgroup_size(WG)
fn reparameterize_kl_backward(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    let w = weight(s.row);
    for (var i = s.begin; i < s.end; i++) {
        let sd = sigma(b[i]);
        let dz = d[i];
        o0[i] = fma(V(w), a[i], dz);
        o1[i] = 0.5 * fma(V(w), sd * sd - 1.0, dz * c[i] * sd);
    }
}

// KL(q ‖ p) between N(μq, σq²) and N(μp, σp²), per dimension:
//   ½ (log σp² − log σq² + (σq² + (μq − μp)²)/σp² − 1).
// σq²/σp² is taken as exp(log σq² − log σp²) and 1/σp² as exp(−log σp²), so neither variance
// alone has to be representable: log σ² = ±30 on both sides stays finite.
struct Pair {
    delta: V,  // μq − μp
    inv: V,    // 1/σp²
    dlog: V,   // log σp² − log σq²
    ratio: V,  // σq²/σp²
}

// Element i of a = μq, b = log σq², c = μp, d = log σp², each loaded once.
fn pair(i: u32) -> Pair {
    let logvar_p = d[i];
    let dlog = logvar_p - b[i];
    return Pair(a[i] - c[i], exp(-logvar_p), dlog, exp(-dlog));
}

// a = μq, b = log σq², c = μp, d = log σp² -> sums = Σ_d KL(q_d ‖ p_d) over the piece.
@compute @workgroup_size(WG)
fn kl_gaussians(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    var acc = V(0.0);
    for (var i = s.begin; i < s.end; i++) {
        let q = pair(i);
        acc += 0.5 * (q.dlog + q.ratio + q.delta * q.delta * q.inv - 1.0);
    }
    sums[s.id] = total(acc);
}

// Gradients of w·KL(q ‖ p): o0 = dμq, o1 = d log σq², o2 = dμp, o3 = d log σp²:
//   dμq = w·(μq − μp)/σp² = −dμp,  d log σq² = ½w(σq²/σp² − 1),
//   d log σp² = ½w(1 − σq²/σp² − (μq − μp)²/σp²).
@compute @workgroup_size(WG)
fn kl_gaussians_backward(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    let w = weight(s.row);
    for (var i = s.begin; i < s.end; i++) {
        let q = pair(i);
        let t = w * q.delta * q.inv;
        o0[i] = t;
        o1[i] = 0.5 * w * (q.ratio - 1.0);
        o2[i] = -t;
        o3[i] = 0.5 * (w * (1.0 - q.ratio) - t * q.delta);
    }
}

// The Ladder VAE's precision-weighted merge of a bottom-up Gaussian q̂ = N(μq, σq²) and a
// top-down one p = N(μp, σp²) (Sønderby et al. 2016, eq. 17–19):
//   σ² = 1/(σq⁻² + σp⁻²),  μ = (μq σq⁻² + μp σp⁻²)·σ².
// With w = σp²/(σq² + σp²) = sigmoid(log σp² − log σq²), the weight of the bottom-up mean:
//   μ = μp + w·(μq − μp),  log σ² = log σq² + log w.
// Neither variance is formed, so log σ² = ±30 on both sides stays finite.
fn stable_sigmoid_v(t: V) -> V {
    let e = exp(-abs(t));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), t >= V(0.0));
}

// log sigmoid(t) = −softplus(−t) = min(t, 0) − log(1 + exp(−|t|)).
fn log_sigmoid_v(t: V) -> V {
    return min(t, V(0.0)) - log(1.0 + exp(-abs(t)));
}

// a = μq, b = log σq², c = μp, d = log σp² -> o0 = μ, o1 = log σ², o2 = w (kept for backward).
@compute @workgroup_size(WG)
fn precision_merge(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    for (var i = s.begin; i < s.end; i++) {
        let t = d[i] - b[i];
        let w = stable_sigmoid_v(t);
        let mu_p = c[i];
        o0[i] = fma(w, a[i] - mu_p, mu_p);
        o1[i] = b[i] + log_sigmoid_v(t);
        o2[i] = w;
    }
}

// Gradients through μ: a = μq, b = w, c = μp, d = dμ ->
//   o0 = dμq = dμ·w, o1 = d log σq² = −dμ·(μq − μp)·w(1 − w), o2 = dμp = dμ·(1 − w),
//   o3 = d log σp² = −o1   (∂w/∂log σp² = w(1 − w) = −∂w/∂log σq²).
@compute @workgroup_size(WG)
fn precision_merge_backward_mean(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    for (var i = s.begin; i < s.end; i++) {
        let w = b[i];
        let g = d[i];
        let dw = g * (a[i] - c[i]) * w * (1.0 - w);
        o0[i] = g * w;
        o1[i] = -dw;
        o2[i] = g - g * w;
        o3[i] = dw;
    }
}

// Gradients through log σ² = log σq² + log w: b = w, d = d log σ² ->
//   o0 = d log σq² = d·w  (1 + ∂log w/∂log σq² = 1 − (1 − w)),  o1 = d log σp² = d·(1 − w).
@compute @workgroup_size(WG)
fn precision_merge_backward_logvar(ids: Ids) {
    let s = span(ids);
    if s.row >= p.rows {
        return;
    }
    for (var i = s.begin; i < s.end; i++) {
        let w = b[i];
        let g = d[i];
        o0[i] = g * w;
        o1[i] = g - g * w;
    }
}
