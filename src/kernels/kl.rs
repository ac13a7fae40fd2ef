//! Launchers for `shaders/kl.wgsl`: z = μ + σ·ε, per-row KL divergences of diagonal Gaussians,
//! their gradients, the fused pair of a VAE's latent layer, and the Ladder VAE's precision-weighted
//! merge of two Gaussians. Tests: `kernels-tests/kl.rs`.

pub use super::rows::Weight;
use super::rows::{self, Family, Rows};
use crate::engine::{Bind, Result, Tensor};

/// `kl.wgsl` with f32 lanes (any D) and vec4 lanes (D a multiple of 4).
pub const SHADERS: Family = rows::family!("kl");

fn rows(op: &'static str, tensors: &[&Tensor]) -> Result<Rows> {
    Rows::new(&SHADERS, op, tensors)
}

/// z = μ + exp(½ log σ²)·ε: `[B, D]` each -> `[B, D]`.
pub fn reparameterize(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<Tensor> {
    let z = rows::output(mu)?;
    rows("reparameterize", &[mu, logvar, eps])?.launch(&[
        Bind::read("a", mu),
        Bind::read("b", logvar),
        Bind::read("c", eps),
        Bind::write("o0", &z),
    ])?;
    Ok(z)
}

/// Gradients of z = μ + σ·ε given dz: `(dμ, d log σ²) = (dz, dz·ε·½σ)`, each `[B, D]`.
pub fn reparameterize_backward(
    logvar: &Tensor,
    eps: &Tensor,
    dz: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let op = "reparameterize_backward";
    let inputs = [
        Bind::read("b", logvar),
        Bind::read("c", eps),
        Bind::read("d", dz),
    ];
    let [dmu, dlogvar] = rows(op, &[logvar, eps, dz])?.grads(&inputs, Weight::Scalar(1.0))?;
    Ok((dmu, dlogvar))
}

/// Per-row KL(N(μ, σ²) ‖ N(0, I)) = −½ Σ_d (1 + log σ² − μ² − σ²): `[B, D]` each -> `[B]`.
pub fn kl_std_normal(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    rows("kl_std_normal", &[mu, logvar])?.sums(&[Bind::read("a", mu), Bind::read("b", logvar)])
}

/// Gradients of Σ_b g_b·KL_b: `(dμ, d log σ²) = (g·μ, g·½(σ² − 1))`; `g` is f32 `[B]`.
pub fn kl_std_normal_backward(
    mu: &Tensor,
    logvar: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let op = "kl_std_normal_backward";
    let inputs = [Bind::read("a", mu), Bind::read("b", logvar)];
    let [dmu, dlogvar] = rows(op, &[mu, logvar])?.grads(&inputs, Weight::PerRow(g))?;
    Ok((dmu, dlogvar))
}

/// The VAE's latent forward in one pass: `(z, KL)` = ([`reparameterize`], [`kl_std_normal`]).
pub fn reparameterize_kl(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<(Tensor, Tensor)> {
    let z = rows::output(mu)?;
    let kl = rows("reparameterize_kl", &[mu, logvar, eps])?.sums(&[
        Bind::read("a", mu),
        Bind::read("b", logvar),
        Bind::read("c", eps),
        Bind::write("o0", &z),
    ])?;
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
    let op = "reparameterize_kl_backward";
    let inputs = [
        Bind::read("a", mu),
        Bind::read("b", logvar),
        Bind::read("c", eps),
        Bind::read("d", dz),
    ];
    let [dmu, dlogvar] = rows(op, &[mu, logvar, eps, dz])?.grads(&inputs, beta)?;
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
    rows("kl_gaussians", &[mu_q, logvar_q, mu_p, logvar_p])?
        .sums(&pair_inputs(mu_q, logvar_q, mu_p, logvar_p))
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
    let inputs = pair_inputs(mu_q, logvar_q, mu_p, logvar_p);
    let [a, b, c, d] = rows("kl_gaussians_backward", &[mu_q, logvar_q, mu_p, logvar_p])?
        .grads(&inputs, Weight::PerRow(g))?;
    Ok((a, b, c, d))
}

/// The inputs of the two-Gaussian kernels: a = μq, b = log σq², c = μp, d = log σp².
fn pair_inputs<'a>(
    mu_q: &'a Tensor,
    logvar_q: &'a Tensor,
    mu_p: &'a Tensor,
    logvar_p: &'a Tensor,
) -> [Bind<'a>; 4] {
    [
        Bind::read("a", mu_q),
        Bind::read("b", logvar_q),
        Bind::read("c", mu_p),
        Bind::read("d", logvar_p),
    ]
}

/// The precision-weighted merge of a bottom-up Gaussian N(μq, σq²) and a top-down one
/// N(μp, σp²) (Sønderby et al. 2016, eq. 17–19): σ² = 1/(σq⁻² + σp⁻²) and
/// μ = (μq σq⁻² + μp σp⁻²)·σ². Returns `(μ, log σ², w)`, each `[B, D]`, where
/// w = σp²/(σq² + σp²) is the bottom-up mean's weight that the backward passes reuse.
pub fn precision_merge(
    mu_q: &Tensor,
    logvar_q: &Tensor,
    mu_p: &Tensor,
    logvar_p: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let r = rows("precision_merge", &[mu_q, logvar_q, mu_p, logvar_p])?;
    let (mu, logvar, w) = (
        rows::output(mu_q)?,
        rows::output(mu_q)?,
        rows::output(mu_q)?,
    );
    let mut binds = pair_inputs(mu_q, logvar_q, mu_p, logvar_p).to_vec();
    binds.extend([
        Bind::write("o0", &mu),
        Bind::write("o1", &logvar),
        Bind::write("o2", &w),
    ]);
    r.launch(&binds)?;
    Ok((mu, logvar, w))
}

/// Gradients of the merge through its mean, given `dmu`:
/// `(dμq, d log σq², dμp, d log σp²)`, each `[B, D]`; `w` is the forward's third output.
pub fn precision_merge_backward_mean(
    mu_q: &Tensor,
    mu_p: &Tensor,
    w: &Tensor,
    dmu: &Tensor,
) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let inputs = [
        Bind::read("a", mu_q),
        Bind::read("b", w),
        Bind::read("c", mu_p),
        Bind::read("d", dmu),
    ];
    let [a, b, c, d] = rows("precision_merge_backward_mean", &[mu_q, w, mu_p, dmu])?
        .grads(&inputs, Weight::Scalar(1.0))?;
    Ok((a, b, c, d))
}

/// Gradients of the merge through its log variance, given `dlogvar`:
/// `(d log σq², d log σp²)`, each `[B, D]`.
pub fn precision_merge_backward_logvar(w: &Tensor, dlogvar: &Tensor) -> Result<(Tensor, Tensor)> {
    let inputs = [Bind::read("b", w), Bind::read("d", dlogvar)];
    let [a, b] = rows("precision_merge_backward_logvar", &[w, dlogvar])?
        .grads(&inputs, Weight::Scalar(1.0))?;
    Ok((a, b))
}
