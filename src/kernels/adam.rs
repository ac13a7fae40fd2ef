//! Launchers for `shaders/adam.wgsl`: in-place Adam / AdamW and SGD (plain, momentum,
//! Nesterov) updates of one parameter tensor, or of a whole optimizer group at once through
//! flat views of its arenas (`optim`). CPU twin and tests: `kernels-tests/adam.rs`.

use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("adam", "adam.wgsl");
/// `adam.wgsl` with `adam/wide.wgsl`'s eight-float entry (devices with 64-bit integers).
pub const WIDE_SHADER: Shader = shader!("adam_wide", "adam.wgsl", "adam/wide.wgsl");

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    weight_decay: f32,
    decay: f32,
    step_size: f32,
    bias2_sqrt: f32,
    _pad: u32,
}

/// Hyperparameters of `torch.optim.Adam` (`decoupled: false`) or `torch.optim.AdamW`
/// (`decoupled: true`); `Default` is Adam's defaults, [`AdamConfig::adamw`] AdamW's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Shrink the weights by `1 − lr·wd` (AdamW) instead of adding `wd·w` to the gradient.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

impl AdamConfig {
    /// `torch.optim.AdamW` defaults: Adam's, with decoupled weight decay 0.01.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 1e-2,
            decoupled: true,
            ..Self::default()
        }
    }
}

/// Hyperparameters of `torch.optim.SGD` with dampening 0; `Default` is its defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

/// One Adam / AdamW step at step number `t ≥ 1`, updating `param`, `m` and `v` in place.
/// `m` and `v` start at zero; all four tensors are f32 of one shape. Each element's update
/// depends on that element alone, so one launch over flat views `[N]` of a group's arenas
/// gives every parameter in them what its own launch would, bit for bit (zero padding stays
/// zero: a zero weight, gradient and moments give a zero update).
pub fn adam_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    t: u64,
    cfg: &AdamConfig,
) -> Result<()> {
    check_state("adam_step", param, &[grad, m, v])?;
    if t == 0 {
        return Err(Error::bad("adam_step", "step t counts from 1"));
    }
    let AdamConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
    } = *cfg;
    non_negative(
        "adam_step",
        &[("lr", lr), ("eps", eps), ("weight_decay", weight_decay)],
    )?;
    for (name, beta) in [("beta1", beta1), ("beta2", beta2)] {
        if !(0.0..1.0).contains(&beta) {
            return Err(Error::bad(
                "adam_step",
                format!("{name} = {beta} is not in [0, 1)"),
            ));
        }
    }
    let t = t as f64;
    let p = Params {
        n: param.numel() as u32,
        lr: lr as f32,
        one_minus_beta1: (1.0 - beta1) as f32,
        beta2: beta2 as f32,
        one_minus_beta2: (1.0 - beta2) as f32,
        eps: eps as f32,
        weight_decay: weight_decay as f32,
        decay: (1.0 - lr * weight_decay) as f32,
        step_size: (lr / (1.0 - beta1.powf(t))) as f32,
        bias2_sqrt: (1.0 - beta2.powf(t)).sqrt() as f32,
        ..Params::default()
    };
    let constants = [("DECOUPLED", decoupled as u8 as f64)];
    // Eight elements per invocation where the device reads 64-bit words and the length
    // allows (a group's arena), else four (every W1 tensor), else one.
    let int64 = param
        .engine()
        .features()
        .contains(wgpu::Features::SHADER_INT64);
    if int64 && p.n.is_multiple_of(8) {
        let p = Params { n: p.n / 8, ..p };
        let tensors = [
            Bind::read("grad8", grad),
            Bind::write("param8", param),
            Bind::write("m8", m),
            Bind::write("v8", v),
        ];
        let groups = p.n.div_ceil(WG);
        return super::launch(&WIDE_SHADER, "adam8", &constants, &tensors, &p, groups);
    }
    if p.n.is_multiple_of(4) {
        let p = Params { n: p.n / 4, ..p };
        let tensors = [
            Bind::read("grad4", grad),
            Bind::write("param4", param),
            Bind::write("m4", m),
            Bind::write("v4", v),
        ];
        return launch("adam4", &constants, &tensors, p);
    }
    let tensors = [
        Bind::read("grad", grad),
        Bind::write("param", param),
        Bind::write("m", m),
        Bind::write("v", v),
    ];
    launch("adam", &constants, &tensors, p)
}

/// One SGD step, updating `param` (and the momentum buffer) in place. `momentum_buf` (f32,
/// shape of `param`, starting at zero) is required when `momentum > 0` and refused otherwise.
pub fn sgd_step(
    param: &Tensor,
    grad: &Tensor,
    momentum_buf: Option<&Tensor>,
    cfg: &SgdConfig,
) -> Result<()> {
    let SgdConfig {
        lr,
        momentum,
        weight_decay,
        nesterov,
    } = *cfg;
    let named = [
        ("lr", lr),
        ("momentum", momentum),
        ("weight_decay", weight_decay),
    ];
    non_negative("sgd_step", &named)?;
    if nesterov && momentum == 0.0 {
        return Err(Error::bad(
            "sgd_step",
            "Nesterov momentum needs momentum > 0",
        ));
    }
    let p = Params {
        n: param.numel() as u32,
        lr: lr as f32,
        momentum: momentum as f32,
        weight_decay: weight_decay as f32,
        ..Params::default()
    };
    match (momentum > 0.0, momentum_buf) {
        (true, Some(buf)) => {
            check_state("sgd_step", param, &[grad, buf])?;
            let constants = [("NESTEROV", nesterov as u8 as f64)];
            let tensors = [
                Bind::read("grad", grad),
                Bind::write("param", param),
                Bind::write("m", buf),
            ];
            launch("sgd_momentum", &constants, &tensors, p)
        }
        (false, None) => {
            check_state("sgd_step", param, &[grad])?;
            launch(
                "sgd",
                &[],
                &[Bind::read("grad", grad), Bind::write("param", param)],
                p,
            )
        }
        (true, None) => Err(Error::bad(
            "sgd_step",
            "momentum > 0 needs a momentum buffer",
        )),
        (false, Some(_)) => Err(Error::bad("sgd_step", "a momentum buffer without momentum")),
    }
}

/// Errors unless `param` and every tensor in `others` are f32 of `param`'s shape.
fn check_state(op: &'static str, param: &Tensor, others: &[&Tensor]) -> Result<()> {
    param.expect_dtype(op, DType::F32)?;
    for t in others {
        t.expect_dtype(op, DType::F32)?;
        t.expect_shape(op, param.shape())?;
    }
    Ok(())
}

/// Errors unless every named value is a number ≥ 0 (NaN fails too), as torch.optim checks.
fn non_negative(op: &'static str, named: &[(&str, f64)]) -> Result<()> {
    match named.iter().find(|(_, x)| x.is_nan() || *x < 0.0) {
        Some((name, x)) => Err(Error::bad(op, format!("{name} = {x} must be ≥ 0"))),
        None => Ok(()),
    }
}

fn launch(
    entry: &'static str,
    constants: &[(&'static str, f64)],
    tensors: &[Bind],
    p: Params,
) -> Result<()> {
    super::launch(&SHADER, entry, constants, tensors, &p, p.n.div_ceil(WG))
}
