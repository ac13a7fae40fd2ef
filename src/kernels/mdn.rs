//! Launchers for `shaders/mdn.wgsl`: the loss of a mixture density network with K isotropic
//! components of one fixed σ and its gradient. CPU twin and tests: `kernels-tests/mdn.rs`.

use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("mdn", "mdn.wgsl");

const WG: usize = 64;

/// Which component a target is scored under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdnLoss {
    /// Deshpande et al. 2017: only the closest component, −log π_k* + ‖z − μ_k*‖²/(2σ²).
    Closest,
    /// The mixture's negative log-likelihood −log Σ_k π_k N(z; μ_k, σ²I).
    Likelihood,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    k: u32,
    d: u32,
    mode: u32,
    inv_var: f32,
    log_norm: f32,
    pad: [u32; 2],
}

/// Checks means `[B, K, D]`, logits `[B, K]`, target `[B, D]` and builds the uniform.
fn params(
    op: &'static str,
    means: &Tensor,
    logits: &Tensor,
    target: &Tensor,
    sigma: f32,
    mode: MdnLoss,
) -> Result<Params> {
    for t in [means, logits, target] {
        t.expect_dtype(op, DType::F32)?;
    }
    let &[b, k, d] = means.shape() else {
        let why = format!("means must be [B, K, D], got {:?}", means.shape());
        return Err(Error::bad(op, why));
    };
    logits.expect_shape(op, &[b, k])?;
    target.expect_shape(op, &[b, d])?;
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(Error::bad(
            op,
            format!("σ must be finite and above 0, got {sigma}"),
        ));
    }
    let var = (sigma as f64).powi(2);
    let log_norm = match mode {
        MdnLoss::Closest => 0.0,
        MdnLoss::Likelihood => 0.5 * d as f64 * (2.0 * std::f64::consts::PI * var).ln(),
    };
    Ok(Params {
        rows: b as u32,
        k: k as u32,
        d: d as u32,
        mode: (mode == MdnLoss::Likelihood) as u32,
        inv_var: (1.0 / var) as f32,
        log_norm: log_norm as f32,
        pad: [0; 2],
    })
}

/// Per-row loss `[B]` and responsibilities `[B, K]` (one-hot of the closest component, or the
/// posterior over components) of targets `target` `[B, D]` under means `[B, K, D]` and
/// mixture logits `[B, K]`, each component N(μ_k, σ²I).
pub fn mdn_forward(
    means: &Tensor,
    logits: &Tensor,
    target: &Tensor,
    sigma: f32,
    mode: MdnLoss,
) -> Result<(Tensor, Tensor)> {
    let p = params("mdn_forward", means, logits, target, sigma, mode)?;
    let e = means.engine();
    let loss = Tensor::uninit(e, &[p.rows as usize], DType::F32)?;
    let resp = Tensor::uninit(e, logits.shape(), DType::F32)?;
    let outputs = [Bind::write("loss", &loss), Bind::write("resp_out", &resp)];
    launch("mdn_forward", &p, [means, logits, target], &outputs)?;
    Ok((loss, resp))
}

/// Gradients of Σ_b g_b·loss_b w.r.t. means and logits, from the forward's responsibilities
/// `resp` `[B, K]` and `g` `[B]`: `(dmeans [B, K, D], dlogits [B, K])`.
pub fn mdn_backward(
    means: &Tensor,
    logits: &Tensor,
    target: &Tensor,
    resp: &Tensor,
    g: &Tensor,
    sigma: f32,
) -> Result<(Tensor, Tensor)> {
    let op = "mdn_backward";
    // The mode lives in `resp`; the backward needs only 1/σ².
    let p = params(op, means, logits, target, sigma, MdnLoss::Closest)?;
    resp.expect_shape(op, logits.shape())?;
    g.expect_dtype(op, DType::F32)?;
    g.expect_shape(op, &[p.rows as usize])?;
    let e = means.engine();
    let dmeans = Tensor::uninit(e, means.shape(), DType::F32)?;
    let dlogits = Tensor::uninit(e, logits.shape(), DType::F32)?;
    let rest = [
        Bind::read("g", g),
        Bind::read("resp", resp),
        Bind::write("dmeans", &dmeans),
        Bind::write("dlogits", &dlogits),
    ];
    launch(op, &p, [means, logits, target], &rest)?;
    Ok((dmeans, dlogits))
}

/// Records `entry` with one invocation per row, binding means, logits and the target code
/// first, then `rest`.
fn launch(
    entry: &'static str,
    p: &Params,
    [means, logits, code]: [&Tensor; 3],
    rest: &[Bind],
) -> Result<()> {
    let mut tensors = vec![
        Bind::read("means", means),
        Bind::read("logits", logits),
        Bind::read("code", code),
    ];
    tensors.extend_from_slice(rest);
    let workgroups = (p.rows as usize).div_ceil(WG) as u32;
    super::launch(&SHADER, entry, &[], &tensors, p, workgroups)
}
