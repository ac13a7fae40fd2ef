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
pub fn iwae_log_weights(
    nll_x: &Tensor,
    z: &Tensor,
    logvar: &Tensor,
    eps: &Tensor,
) -> Result<Tensor> {
    let ratio = log_prior_ratio(z, eps, logvar, None)?;
    nll_x.expect_shape("iwae_log_weights", ratio.shape())?;
    ew::binary(Binary::Sub, &ratio, nll_x)
}

/// log p(z) − log q(z|·) per row for z = μ_q + σ_q·ε drawn from a diagonal Gaussian q with
/// noise `eps`, under the prior N(μ_p, σ_p²) given as `prior` = (μ_p, log σ_p²), or N(0, I)
/// when `None`: `z`, `eps`, `logvar_q` (and the prior's tensors) `[N, D]` -> `[N]`.
///
/// Everything stays in log space: log q(z|·) = −½ Σ (log 2π + log σ_q² + ε²) needs neither
/// exp(−log σ_q²) nor (z − μ_q)², so it stays finite when log σ_q² falls below −88, where σ_q² = 0
/// in f32 and the density form (z − μ_q)²/σ_q² gives 0·∞. The two −½ D log 2π terms cancel:
/// the result is ½ Σ (log σ_q² + ε² − log σ_p² − ((z − μ_p)·exp(−½ log σ_p²))²), finite while
/// −log σ_p² stays below 176 (where exp(−½ log σ_p²) overflows f32).
pub fn log_prior_ratio(
    z: &Tensor,
    eps: &Tensor,
    logvar_q: &Tensor,
    prior: Option<(&Tensor, &Tensor)>,
) -> Result<Tensor> {
    const OP: &str = "log_prior_ratio";
    if z.shape().len() != 2 {
        return Err(Error::bad(
            OP,
            format!("z must be [N, D], got {:?}", z.shape()),
        ));
    }
    logvar_q.expect_shape(OP, z.shape())?;
    eps.expect_shape(OP, z.shape())?;
    let q_terms = ew::binary(Binary::Add, logvar_q, &ew::unary(Unary::Square, eps)?)?;
    let terms = match prior {
        None => ew::binary(Binary::Sub, &q_terms, &ew::unary(Unary::Square, z)?)?,
        Some((mu_p, logvar_p)) => {
            mu_p.expect_shape(OP, z.shape())?;
            logvar_p.expect_shape(OP, z.shape())?;
            let inv_sd = ew::unary(Unary::Exp, &ew::affine(logvar_p, -0.5, 0.0)?)?;
            let scaled = ew::binary(Binary::Mul, &ew::binary(Binary::Sub, z, mu_p)?, &inv_sd)?;
            let p_terms = ew::binary(Binary::Add, logvar_p, &ew::unary(Unary::Square, &scaled)?)?;
            ew::binary(Binary::Sub, &q_terms, &p_terms)?
        }
    };
    ew::affine(&reduce::reduce_last(Reduce::Sum, &terms)?, 0.5, 0.0)
}
