//! Distribution helpers composed from kernels: the importance-weighted bound of Burda et al.
//! (2016) and its log weights in log space. The densities themselves are kernels
//! (`kernels::kl`, `kernels::losses`). Tests: `tests/dist.rs`.

use crate::engine::{Error, Result, Tensor};
use crate::kernels::elementwise::{self as ew, Binary, Unary};
use crate::kernels::reduce::{self, Reduce};

/// −log p(x) ≈ −log (1/k) Σ_j w_j per row of `log_w` `[B, k]` (log importance weights
/// log p(x, z_j) − log q(z_j|x)), by a max-shifted log-sum-exp: returns `[B]`.
pub fn iwae_nll(log_w: &Tensor) -> Result<Tensor> {
    let k = match log_w.shape() {
        [_, k] => *k,
        s => {
            return Err(Error::bad(
                "iwae_nll",
                format!("log weights must be [B, k], got {s:?}"),
            ));
        }
    };
    let lse = reduce::logsumexp_last(log_w)?;
    ew::affine(&lse, -1.0, (k as f64).ln() as f32)
}

/// Log importance weights log w = log p(x|z) + log p(z) − log q(z|x) of a VAE with a standard
/// normal prior and a diagonal Gaussian posterior, for z = μ + σ·ε drawn with noise `eps`:
/// `nll_x` `[N]` (−log p(x|z)), `z`, `logvar` and `eps` `[N, D]` -> `[N]`.
///
/// Everything stays in log space: log q(z|x) = −½ Σ (log 2π + log σ² + ε²) needs neither
/// exp(−log σ²) nor (z − μ)², so it stays finite when log σ² falls below −88, where σ² = 0 in
/// f32 and the density form (z − μ)²/σ² gives 0·∞. The two −½ D log 2π terms cancel:
/// log w = −nll_x + ½ Σ (log σ² + ε² − z²).
pub fn iwae_log_weights(
    nll_x: &Tensor,
    z: &Tensor,
    logvar: &Tensor,
    eps: &Tensor,
) -> Result<Tensor> {
    let rows = match z.shape() {
        [n, _] => *n,
        s => {
            return Err(Error::bad(
                "iwae_log_weights",
                format!("z must be [N, D], got {s:?}"),
            ));
        }
    };
    logvar.expect_shape("iwae_log_weights", z.shape())?;
    eps.expect_shape("iwae_log_weights", z.shape())?;
    nll_x.expect_shape("iwae_log_weights", &[rows])?;
    let terms = ew::binary(
        Binary::Sub,
        &ew::binary(Binary::Add, logvar, &ew::unary(Unary::Square, eps)?)?,
        &ew::unary(Unary::Square, z)?,
    )?;
    let half = ew::affine(&reduce::reduce_last(Reduce::Sum, &terms)?, 0.5, 0.0)?;
    ew::binary(Binary::Sub, &half, nll_x)
}
