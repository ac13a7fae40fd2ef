//! Launchers for `shaders/losses.wgsl`: per-row BCE with logits, Gaussian NLL and cross entropy
//! with logits, and their one-pass gradients (BCE's also w.r.t. soft targets).
//! CPU twin and tests: `kernels-tests/losses.rs`.

use super::reduce::softmax_stats;
use super::rows::{self, Family, Rows, Weight};
use crate::engine::{Bind, DType, Result, Tensor};

/// `losses.wgsl` with f32 lanes (any D) and vec4 lanes (D a multiple of 4).
pub const SHADERS: Family = rows::family!("losses");

fn rows(op: &'static str, tensors: &[&Tensor]) -> Result<Rows> {
    Rows::new(&SHADERS, op, tensors)
}

/// Per-row Σ_j BCE(σ(l_j), x_j) = Σ_j [max(l, 0) − l·x + log(1 + exp(−|l|))]: logits and
/// targets (in [0, 1]) `[B, D]` -> `[B]`.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    rows("bce_with_logits", &[logits, target])?
        .sums(&[Bind::read("a", logits), Bind::read("b", target)])
}

/// `dlogits = g_row·(σ(l) − x)`, `[B, D]`; `g` is f32 `[B]`.
pub fn bce_with_logits_backward(logits: &Tensor, target: &Tensor, g: &Tensor) -> Result<Tensor> {
    let inputs = [Bind::read("a", logits), Bind::read("b", target)];
    let [d] =
        rows("bce_with_logits_backward", &[logits, target])?.grads(&inputs, Weight::PerRow(g))?;
    Ok(d)
}

/// Per-row −log N(x; μ, σ²) = ½ Σ_j (log 2π + log σ² + (x − μ)²/σ²): `[B, D]` each -> `[B]`.
pub fn gaussian_nll(x: &Tensor, mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    rows("gaussian_nll", &[x, mu, logvar])?.sums(&nll_inputs(x, mu, logvar))
}

/// `(dμ, d log σ²) = (g·(μ − x)/σ², g·½(1 − (x − μ)²/σ²))`, each `[B, D]`; `g` is f32 `[B]`.
/// (dx is −dμ.)
pub fn gaussian_nll_backward(
    x: &Tensor,
    mu: &Tensor,
    logvar: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let [dmu, dlogvar] = rows("gaussian_nll_backward", &[x, mu, logvar])?
        .grads(&nll_inputs(x, mu, logvar), Weight::PerRow(g))?;
    Ok((dmu, dlogvar))
}

/// The inputs of the Gaussian NLL kernels: a = x, b = μ, c = log σ².
fn nll_inputs<'a>(x: &'a Tensor, mu: &'a Tensor, logvar: &'a Tensor) -> [Bind<'a>; 3] {
    [
        Bind::read("a", x),
        Bind::read("b", mu),
        Bind::read("c", logvar),
    ]
}

/// A cross-entropy launch of `entry` (or its `_stats` twin) and its inputs: rows of one piece
/// (≤ 4,096 V units) get their log-sum-exp inline; longer ones read reduce.wgsl's (max, log Σ
/// exp) pairs from `stats`, computed in as many passes as their length needs.
fn cross_entropy(
    entry: &'static str,
    stats_entry: &'static str,
    logits: &Tensor,
    labels: &Tensor,
) -> Result<(Rows, Option<Tensor>)> {
    let rows = rows(entry, &[logits])?;
    labels.expect_dtype(entry, DType::U32)?;
    labels.expect_shape(entry, &[rows.rows()])?;
    if rows.pieces() == 1 {
        return Ok((rows, None));
    }
    let stats = softmax_stats(entry, logits)?;
    Ok((rows.entry(stats_entry), Some(stats)))
}

/// The named inputs of a cross-entropy launch.
fn cross_entropy_inputs<'a>(
    logits: &'a Tensor,
    labels: &'a Tensor,
    stats: Option<&'a Tensor>,
) -> Vec<Bind<'a>> {
    let mut inputs = vec![Bind::read("a", logits), Bind::read("labels", labels)];
    inputs.extend(stats.map(|s| Bind::read("stats", s)));
    inputs
}

/// Per-row cross entropy `logsumexp(l) − l[label]` (max-shifted): logits f32 `[B, C]`, labels
/// u32 `[B]` -> `[B]`. A label ≥ C gives NaN for its row (labels on the GPU are not checked on
/// the host, which would have to wait for them).
pub fn cross_entropy_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (rows, stats) = cross_entropy(
        "cross_entropy_logits",
        "cross_entropy_logits_stats",
        logits,
        labels,
    )?;
    // One invocation per row: given the statistics, a long row's loss is one lookup.
    rows.whole_rows()
        .sums(&cross_entropy_inputs(logits, labels, stats.as_ref()))
}

/// `dlogits = g·(softmax(l) − onehot(label))`, `[B, C]`; `g` is f32 `[B]`. A label ≥ C gives a
/// row of NaN.
pub fn cross_entropy_logits_backward(
    logits: &Tensor,
    labels: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    let (rows, stats) = cross_entropy(
        "cross_entropy_logits_backward",
        "cross_entropy_logits_stats_backward",
        logits,
        labels,
    )?;
    let inputs = cross_entropy_inputs(logits, labels, stats.as_ref());
    let [d] = rows.grads(&inputs, Weight::PerRow(g))?;
    Ok(d)
}

/// Gradient of [`bce_with_logits`] w.r.t. soft targets (targets that carry a gradient, e.g. a
/// decoder's output): `dtarget = −g_row·l`, `[B, D]`; `g` is f32 `[B]`. The targets are checked
/// for their shape but not read: ∂BCE/∂x = −l whatever x is.
pub fn bce_with_logits_backward_target(
    logits: &Tensor,
    target: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    let rows = rows("bce_with_logits_backward_target", &[logits, target])?;
    let [d] = rows.grads(&[Bind::read("a", logits)], Weight::PerRow(g))?;
    Ok(d)
}

/// Both gradients of [`bce_with_logits`] in one pass: `(dlogits, dtarget) =
/// (g_row·(σ(l) − x), −g_row·l)`, each `[B, D]`; `g` is f32 `[B]`.
pub fn bce_with_logits_backward_both(
    logits: &Tensor,
    target: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let inputs = [Bind::read("a", logits), Bind::read("b", target)];
    let rows = rows("bce_with_logits_backward_both", &[logits, target])?;
    let [dl, dt] = rows.grads(&inputs, Weight::PerRow(g))?;
    Ok((dl, dt))
}
