//! Distribution helpers composed from kernels: the importance-weighted bound of Burda et al.
//! (2016). The densities themselves are kernels (`kernels::kl`, `kernels::losses`). Tests: `tests/dist.rs`.

use crate::engine::{Error, Result, Tensor};
use crate::kernels::{elementwise as ew, reduce};

/// −log p(x) ≈ −log (1/k) Σ_j w_j per row of `log_w` [B, k] (log importance weights
/// log p(x, z_j) − log q(z_j|x)), by a max-shifted log-sum-exp: returns [B].
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
