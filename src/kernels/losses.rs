//! Launchers for `shaders/losses.wgsl`: per-row BCE with logits, Gaussian NLL and cross entropy
//! with logits, and their one-pass gradients (BCE's also w.r.t. soft targets).
//! CPU twin and tests: `kernels-tests/losses.rs`.

use super::reduce::softmax_stats;
use super::rows::{self, Family, Rows, Weight};
use crate::engine::{DType, Result, Tensor};

/// `losses.wgsl` with f32 lanes (any D) and vec4 lanes (D a multiple of 4).
pub const SHADERS: Family = rows::family!("losses");

fn rows(op: &'static str, tensors: &[&Tensor]) -> Result<Rows> {
    Rows::new(&SHADERS, op, tensors)
}

/// Per-row Σ_j BCE(σ(l_j), x_j) = Σ_j [max(l, 0) − l·x + log(1 + exp(−|l|))]: logits and
/// targets (in [0, 1]) `[B, D]` -> `[B]`.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    rows("bce_with_logits", &[logits, target])?.sums(&[logits, target])
}

/// `dlogits = g_row·(σ(l) − x)`, `[B, D]`; `g` is f32 `[B]`.
pub fn bce_with_logits_backward(logits: &Tensor, target: &Tensor, g: &Tensor) -> Result<Tensor> {
    let inputs = [logits, target];
    let [d] = rows("bce_with_logits_backward", &inputs)?.grads(&inputs, Weight::PerRow(g))?;
    Ok(d)
}

/// Per-row −log N(x; μ, σ²) = ½ Σ_j (log 2π + log σ² + (x − μ)²/σ²): `[B, D]` each -> `[B]`.
pub fn gaussian_nll(x: &Tensor, mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    rows("gaussian_nll", &[x, mu, logvar])?.sums(&[x, mu, logvar])
}

/// `(dμ, d log σ²) = (g·(μ − x)/σ², g·½(1 − (x − μ)²/σ²))`, each `[B, D]`; `g` is f32 `[B]`.
/// (dx is −dμ.)
pub fn gaussian_nll_backward(
    x: &Tensor,
    mu: &Tensor,
    logvar: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let inputs = [x, mu, logvar];
    let [dmu, dlogvar] =
        rows("gaussian_nll_backward", &inputs)?.grads(&inputs, Weight::PerRow(g))?;
    Ok((dmu, dlogvar))
}

/// A cross-entropy launch and the row statistics to bind: rows of one piece (≤ 4,096 V units)
/// get their log-sum-exp inline (the logits fill the unread binding); longer ones read
/// reduce.wgsl's (max, log Σ exp) pairs, computed in as many passes as their length needs.
fn cross_entropy(op: &'static str, logits: &Tensor, labels: &Tensor) -> Result<(Rows, Tensor)> {
    let rows = rows(op, &[logits])?;
    labels.expect_dtype(op, DType::U32)?;
    labels.expect_shape(op, &[rows.rows()])?;
    let inline = rows.pieces() == 1;
    let stats = match inline {
        true => logits.clone(),
        false => softmax_stats(op, logits)?,
    };
    Ok((rows.flag("INLINE", inline), stats))
}

/// Per-row cross entropy `logsumexp(l) − l[label]` (max-shifted): logits f32 `[B, C]`, labels
/// u32 `[B]` -> `[B]`. A label ≥ C gives NaN for its row (labels on the GPU are not checked on
/// the host, which would have to wait for them).
pub fn cross_entropy_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (rows, stats) = cross_entropy("cross_entropy_logits", logits, labels)?;
    // One invocation per row: given the statistics, a long row's loss is one lookup.
    rows.whole_rows().sums(&[logits, labels, &stats])
}

/// `dlogits = g·(softmax(l) − onehot(label))`, `[B, C]`; `g` is f32 `[B]`. A label ≥ C gives a
/// row of NaN.
pub fn cross_entropy_logits_backward(
    logits: &Tensor,
    labels: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    let op = "cross_entropy_logits_backward";
    let (rows, stats) = cross_entropy(op, logits, labels)?;
    let [d] = rows.grads(&[logits, labels, &stats], Weight::PerRow(g))?;
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
    let [d] = rows.grads(&[logits], Weight::PerRow(g))?;
    Ok(d)
}

/// Both gradients of [`bce_with_logits`] in one pass: `(dlogits, dtarget) =
/// (g_row·(σ(l) − x), −g_row·l)`, each `[B, D]`; `g` is f32 `[B]`.
pub fn bce_with_logits_backward_both(
    logits: &Tensor,
    target: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let inputs = [logits, target];
    let [dl, dt] =
        rows("bce_with_logits_backward_both", &inputs)?.grads(&inputs, Weight::PerRow(g))?;
    Ok((dl, dt))
}
