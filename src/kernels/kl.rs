//! Launchers for `shaders/kl.wgsl`: z = μ + σ·ε, per-row KL divergences of diagonal Gaussians,
//! their gradients, and the fused pair of a VAE's latent layer. Tests: `kernels-tests/kl.rs`.

pub use super::rows::Weight;
use super::rows::{self, Family, Rows};
use crate::engine::{Result, Tensor};

/// `kl.wgsl` with f32 lanes (any D) and vec4 lanes (D a multiple of 4).
pub const SHADERS: Family = rows::family!("kl");

fn rows(op: &'static str, tensors: &[&Tensor]) -> Result<Rows> {
    Rows::new(&SHADERS, op, tensors)
}

/// z = μ + exp(½ log σ²)·ε: `[B, D]` each -> `[B, D]`.
pub fn reparameterize(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<Tensor> {
    let z = rows::output(mu)?;
    rows("reparameterize", &[mu, logvar, eps])?.launch(&[mu, logvar, eps, &z])?;
    Ok(z)
}

/// Gradients of z = μ + σ·ε given dz: `(dμ, d log σ²) = (dz, dz·ε·½σ)`, each `[B, D]`.
pub fn reparameterize_backward(
    logvar: &Tensor,
    eps: &Tensor,
    dz: &Tensor,
) -> Result<(Tensor, Tensor)> {
    // Without the KL part μ and the weights are not read: log σ² fills their bindings.
    let inputs = [logvar, logvar, eps, dz];
    gaussian_backward(
        "reparameterize_backward",
        inputs,
        Weight::Scalar(0.0),
        [true, false],
    )
}

/// Per-row KL(N(μ, σ²) ‖ N(0, I)) = −½ Σ_d (1 + log σ² − μ² − σ²): `[B, D]` each -> `[B]`.
pub fn kl_std_normal(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    rows("kl_std_normal", &[mu, logvar])?.sums(&[mu, logvar])
}

/// Gradients of Σ_b g_b·KL_b: `(dμ, d log σ²) = (g·μ, g·½(σ² − 1))`; `g` is f32 `[B]`.
pub fn kl_std_normal_backward(
    mu: &Tensor,
    logvar: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    // Without the reparameterisation part ε and dz are not read: μ fills their bindings.
    let inputs = [mu, logvar, mu, mu];
    gaussian_backward(
        "kl_std_normal_backward",
        inputs,
        Weight::PerRow(g),
        [false, true],
    )
}

/// The VAE's latent forward in one pass: `(z, KL)` = ([`reparameterize`], [`kl_std_normal`]).
pub fn reparameterize_kl(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<(Tensor, Tensor)> {
    let z = rows::output(mu)?;
    let kl = rows("reparameterize_kl", &[mu, logvar, eps])?.sums(&[mu, logvar, eps, &z])?;
    Ok((z, kl))
}

/// The VAE's latent backward in one pass, for a loss `f(z) + Σ_b β_b·KL_b` given `dz = ∂f/∂z`:
/// `dμ = dz + β·μ`, `d log σ² = dz·ε·½σ + β·½(σ² − 1)`, with β per row or one for all.
pub fn reparameterize_kl_backward(
    mu: &Tensor,
    logvar: &Tensor,
    eps: &Tensor,
    dz: &Tensor,
    beta: Weight,
) -> Result<(Tensor, Tensor)> {
    let inputs = [mu, logvar, eps, dz];
    gaussian_backward("reparameterize_kl_backward", inputs, beta, [true, true])
}

/// `gaussian_backward` with its reparameterisation and KL parts on or off.
fn gaussian_backward(
    op: &'static str,
    inputs: [&Tensor; 4],
    w: Weight,
    [reparam, kl]: [bool; 2],
) -> Result<(Tensor, Tensor)> {
    let [dmu, dlogvar] = rows(op, &inputs)?
        .entry("gaussian_backward")
        .flag("REPARAM", reparam)
        .flag("KL", kl)
        .grads(&inputs, w)?;
    Ok((dmu, dlogvar))
}

/// Per-row KL(N(μq, σq²) ‖ N(μp, σp²)) = ½ Σ_d (log σp² − log σq² + (σq² + (μq − μp)²)/σp² − 1):
/// `[B, D]` each -> `[B]`. Finite while log σq² − log σp² and −log σp² stay below 88 (where
/// f32's exp overflows); neither variance alone has to be representable.
pub fn kl_gaussians(
    mu_q: &Tensor,
    logvar_q: &Tensor,
    mu_p: &Tensor,
    logvar_p: &Tensor,
) -> Result<Tensor> {
    let inputs = [mu_q, logvar_q, mu_p, logvar_p];
    rows("kl_gaussians", &inputs)?.sums(&inputs)
}

/// Gradients of Σ_b g_b·KL_b(q ‖ p) w.r.t. all four inputs: `(dμq, d log σq², dμp, d log σp²)`,
/// each `[B, D]`; `g` is f32 `[B]`. Binds 9 storage buffers: a typed error on a device that
/// allows fewer per shader stage.
pub fn kl_gaussians_backward(
    mu_q: &Tensor,
    logvar_q: &Tensor,
    mu_p: &Tensor,
    logvar_p: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let inputs = [mu_q, logvar_q, mu_p, logvar_p];
    let [a, b, c, d] = rows("kl_gaussians_backward", &inputs)?.grads(&inputs, Weight::PerRow(g))?;
    Ok((a, b, c, d))
}
