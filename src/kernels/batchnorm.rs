//! Launchers for `shaders/batchnorm.wgsl`: BatchNorm over channels of `[B, C, H, W]` (or features
//! of `[B, F]`) in training and eval mode, and its backward. CPU twin and tests: `kernels-tests/batchnorm.rs`.

use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

/// `batchnorm.wgsl`, `[pass][lanes]`: forward passes (`apply` without dy), the backward pass
/// (`apply` adds the dy term) and the backward of a batch norm fused with its ReLU (dy masked
/// by the output); f32 lanes (any shape) and vec4 lanes (H·W ≥ 4, numel % 4 == 0).
pub const SHADERS: [[Shader; 2]; 3] = [
    [
        shader!(
            "batchnorm",
            "rows/lanes_f32.wgsl",
            "batchnorm/forward.wgsl",
            "batchnorm.wgsl"
        ),
        shader!(
            "batchnorm_v4",
            "rows/lanes_vec4.wgsl",
            "batchnorm/forward.wgsl",
            "batchnorm.wgsl"
        ),
    ],
    [
        shader!(
            "batchnorm_grad",
            "rows/lanes_f32.wgsl",
            "batchnorm/backward.wgsl",
            "batchnorm.wgsl"
        ),
        shader!(
            "batchnorm_grad_v4",
            "rows/lanes_vec4.wgsl",
            "batchnorm/backward.wgsl",
            "batchnorm.wgsl"
        ),
    ],
    [
        shader!(
            "batchnorm_relu_grad",
            "rows/lanes_f32.wgsl",
            "batchnorm/backward_relu.wgsl",
            "batchnorm.wgsl"
        ),
        shader!(
            "batchnorm_relu_grad_v4",
            "rows/lanes_vec4.wgsl",
            "batchnorm/backward_relu.wgsl",
            "batchnorm.wgsl"
        ),
    ],
];

/// Which `SHADERS` row a pass runs in.
#[derive(Clone, Copy)]
enum Pass {
    Forward,
    Backward,
    /// The backward of a batch norm fused with its ReLU; the fused output masks dy.
    BackwardRelu,
}

/// What follows the normalisation in a forward `apply`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Activation {
    None,
    Relu,
}

const WG: usize = 64;
/// Values of a channel one invocation reduces or writes at least (when the channel has them):
/// enough to amortise a chunk's partial and its merge.
const MIN_CHUNK: usize = 1024;
/// Invocations a pass aims for: 16 workgroups, so lavapipe's threads stay busy.
const TARGET_INVOCATIONS: usize = 1024;
/// Values per chunk at most: with one-element units and one-element segments ([B, F] in f32
/// lanes) a chunk loops 2·8,192 times, far below lavapipe's 65,535 iterations per invocation.
const MAX_CHUNK: usize = 8192;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    channels: u32,
    spatial: u32,
    chunks: u32,
    chunk: u32,
    count: u32,
    eps: f32,
    momentum: f32,
    unbias: f32,
}

/// `torch.nn.BatchNorm{1,2}d` hyperparameters; `Default` is PyTorch's (eps 1e-5, momentum 0.1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    pub eps: f64,
    /// running = (1 − momentum)·running + momentum·batch statistic.
    pub momentum: f64,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

/// What the training forward leaves for the backward: per-channel batch mean and
/// 1/sqrt(σ² + eps) (σ² biased), each f32 `[C]`.
#[derive(Clone, Debug)]
pub struct BatchNormSaved {
    pub mean: Tensor,
    pub inv_std: Tensor,
}

/// x viewed as `[B, C, S]` and how the passes split it.
struct Plan {
    /// Index of the lane type in [`SHADERS`]: 1 for vec4 lanes.
    lanes: usize,
    params: Params,
}

impl Plan {
    /// Checks x (f32, rank 2 or 4) and the per-channel tensors (f32 `[C]`).
    fn new(op: &'static str, x: &Tensor, per_channel: &[&Tensor]) -> Result<Plan> {
        x.expect_dtype(op, DType::F32)?;
        let (b, c, s) = match *x.shape() {
            [b, f] => (b, f, 1),
            [b, c, h, w] => (b, c, h * w),
            ref shape => {
                return Err(Error::bad(
                    op,
                    format!("expects [B, C, H, W] or [B, F], got {shape:?}"),
                ));
            }
        };
        for t in per_channel {
            t.expect_dtype(op, DType::F32)?;
            t.expect_shape(op, &[c])?;
        }
        if u32::try_from(x.numel()).is_err() {
            return Err(Error::bad(
                op,
                "more than 2^32 - 1 elements (indices are u32)",
            ));
        }
        let count = b * s;
        let chunks = count
            .div_ceil(MIN_CHUNK)
            .min(TARGET_INVOCATIONS.div_ceil(c))
            .max(count.div_ceil(MAX_CHUNK));
        // finalize loops over a channel's chunks: only channels of over 2^28 values reach this.
        if x.engine()
            .max_loop_iterations()
            .is_some_and(|m| chunks > m as usize / 2)
        {
            return Err(Error::bad(
                op,
                format!("{count} values per channel exceed what one pass can merge"),
            ));
        }
        let vec4 = s >= 4 && x.numel().is_multiple_of(4);
        Ok(Plan {
            lanes: vec4 as usize,
            params: Params {
                channels: c as u32,
                spatial: s as u32,
                chunks: chunks as u32,
                chunk: count.div_ceil(chunks) as u32,
                count: count as u32,
                unbias: (count as f64 / (count as f64 - 1.0)) as f32,
                ..Params::default()
            },
        })
    }

    fn channels(&self) -> usize {
        self.params.channels as usize
    }

    /// A new f32 `[C, width]` tensor for per-channel results.
    fn per_channel(&self, x: &Tensor, width: usize) -> Result<Tensor> {
        Tensor::uninit(x.engine(), &[self.channels(), width], DType::F32)
    }

    /// Records `entry` of `pass`'s shader with one invocation per (channel, chunk), or per
    /// channel when `channels`.
    fn launch(
        &self,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        tensors: &[Bind],
        channels: bool,
        pass: Pass,
    ) -> Result<()> {
        let per_channel = if channels { 1 } else { self.params.chunks };
        let n = self.channels() * per_channel as usize;
        super::launch(
            &SHADERS[pass as usize][self.lanes],
            entry,
            constants,
            tensors,
            &self.params,
            n.div_ceil(WG) as u32,
        )
    }

    /// `(x − mean)·slope + offset` with `coefs` per channel, then `activation` -> a new tensor.
    fn apply(&self, x: &Tensor, coefs: &Tensor, activation: Activation) -> Result<Tensor> {
        let out = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
        let tensors = [
            Bind::read("x", x),
            Bind::read("coefs", coefs),
            Bind::write("out", &out),
        ];
        let relu = [("RELU", (activation == Activation::Relu) as u8 as f64)];
        self.launch("apply", &relu, &tensors, false, Pass::Forward)?;
        Ok(out)
    }

    /// The backward's `(x − mean)·c1 + c2 + a·dy` with `coefs` per channel, dy masked by the
    /// fused ReLU's output `relu_out` when there is one -> dx.
    fn apply_grad(
        &self,
        x: &Tensor,
        dy: &Tensor,
        relu_out: Option<&Tensor>,
        coefs: &Tensor,
    ) -> Result<Tensor> {
        let out = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
        let mut tensors = vec![
            Bind::read("x", x),
            Bind::read("dy", dy),
            Bind::read("coefs", coefs),
            Bind::write("out", &out),
        ];
        tensors.extend(relu_out.map(|y| Bind::read("y", y)));
        self.launch("apply", &[], &tensors, false, backward_pass(relu_out))?;
        Ok(out)
    }
}

/// The backward shader for a batch norm with (`Some(y)`) or without a fused ReLU.
fn backward_pass(relu_out: Option<&Tensor>) -> Pass {
    match relu_out {
        Some(_) => Pass::BackwardRelu,
        None => Pass::Backward,
    }
}

fn check_config(op: &'static str, eps: f64, momentum: f64) -> Result<()> {
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(Error::bad(
            op,
            format!("eps = {eps} must be finite and ≥ 0"),
        ));
    }
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::bad(
            op,
            format!("momentum = {momentum} is not in [0, 1]"),
        ));
    }
    Ok(())
}

/// Training forward, `x: [B, C, H, W] -> y` (or `[B, F]`): normalises with the batch's mean and
/// biased variance per channel, `y = γ·(x − μ)/sqrt(σ² + eps) + β`, and updates `running_mean`
/// and `running_var` in place (the latter with the unbiased variance, as PyTorch does).
/// `gamma`, `beta`, `running_*`: f32 `[C]`. Needs at least two values per channel.
pub fn batchnorm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    cfg: &BatchNormConfig,
) -> Result<(Tensor, BatchNormSaved)> {
    let stats = (running_mean, running_var);
    train(
        "batchnorm_train",
        x,
        (gamma, beta),
        stats,
        cfg,
        Activation::None,
    )
}

/// [`batchnorm_train`] followed by a ReLU in the same passes: `y = max(BN(x), 0)`, bit for bit
/// the unfused pair, without the ReLU's extra pass over the activations. Its backward is
/// [`batchnorm_relu_backward`].
pub fn batchnorm_relu_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    cfg: &BatchNormConfig,
) -> Result<(Tensor, BatchNormSaved)> {
    let stats = (running_mean, running_var);
    train(
        "batchnorm_relu_train",
        x,
        (gamma, beta),
        stats,
        cfg,
        Activation::Relu,
    )
}

/// The training forward: statistics, finalize, then apply with `activation`.
fn train(
    op: &'static str,
    x: &Tensor,
    (gamma, beta): (&Tensor, &Tensor),
    (running_mean, running_var): (&Tensor, &Tensor),
    cfg: &BatchNormConfig,
    activation: Activation,
) -> Result<(Tensor, BatchNormSaved)> {
    let mut plan = Plan::new(op, x, &[gamma, beta, running_mean, running_var])?;
    check_config(op, cfg.eps, cfg.momentum)?;
    if plan.params.count < 2 {
        return Err(Error::bad(
            op,
            format!(
                "expected more than 1 value per channel in training, got input {:?}",
                x.shape()
            ),
        ));
    }
    plan.params.eps = cfg.eps as f32;
    plan.params.momentum = cfg.momentum as f32;
    let partials = plan.per_channel(x, 4 * plan.params.chunks as usize)?;
    let tensors = [Bind::read("x", x), Bind::write("part_out", &partials)];
    plan.launch("stats", &[], &tensors, false, Pass::Forward)?;
    let coefs = plan.per_channel(x, 4)?;
    let mean = Tensor::uninit(x.engine(), gamma.shape(), DType::F32)?;
    let inv_std = Tensor::uninit(x.engine(), gamma.shape(), DType::F32)?;
    let tensors = [
        Bind::read("gamma", gamma),
        Bind::read("beta", beta),
        Bind::read("partials", &partials),
        Bind::write("coef_out", &coefs),
        Bind::write("running_mean", running_mean),
        Bind::write("running_var", running_var),
        Bind::write("saved_mean", &mean),
        Bind::write("saved_inv_std", &inv_std),
    ];
    plan.launch("finalize", &[], &tensors, true, Pass::Forward)?;
    let y = plan.apply(x, &coefs, activation)?;
    Ok((y, BatchNormSaved { mean, inv_std }))
}

/// Eval forward: `y = γ·(x − running_mean)/sqrt(running_var + eps) + β`; nothing is updated.
pub fn batchnorm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let op = "batchnorm_eval";
    let mut plan = Plan::new(op, x, &[gamma, beta, running_mean, running_var])?;
    check_config(op, eps, 0.0)?;
    plan.params.eps = eps as f32;
    let coefs = plan.per_channel(x, 4)?;
    let tensors = [
        Bind::read("gamma", gamma),
        Bind::read("beta", beta),
        Bind::read("mean_in", running_mean),
        Bind::read("var_in", running_var),
        Bind::write("coef_out", &coefs),
    ];
    plan.launch("eval_coefs", &[], &tensors, true, Pass::Forward)?;
    plan.apply(x, &coefs, Activation::None)
}

/// Backward of [`batchnorm_train`] given `dy`: `(dx, dγ, dβ)` with `dβ = Σ dy`,
/// `dγ = Σ dy·x̂` and `dx = γ·inv_std/N · (N·dy − dβ − x̂·dγ)`, N = B·H·W.
pub fn batchnorm_backward(
    dy: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    saved: &BatchNormSaved,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dgamma = Tensor::uninit(x.engine(), gamma.shape(), DType::F32)?;
    let dbeta = Tensor::uninit(x.engine(), gamma.shape(), DType::F32)?;
    let dx = batchnorm_backward_into(dy, x, gamma, saved, &dgamma, &dbeta, false)?;
    Ok((dx, dgamma, dbeta))
}

/// [`batchnorm_backward`] writing dγ and dβ into `dgamma` and `dbeta` (f32 `[C]`), or adding
/// them to what the buffers hold when `accumulate`; returns dx.
pub fn batchnorm_backward_into(
    dy: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    saved: &BatchNormSaved,
    dgamma: &Tensor,
    dbeta: &Tensor,
    accumulate: bool,
) -> Result<Tensor> {
    let grads = (dgamma, dbeta);
    let op = "batchnorm_backward";
    let (plan, coefs) = grad_params(op, (x, dy, gamma, saved), None, grads, accumulate)?;
    plan.apply_grad(x, dy, None, &coefs)
}

/// Backward of [`batchnorm_relu_train`] given `dy` and its output `y`: [`batchnorm_backward`]
/// of dy masked where y > 0, in the batch norm backward's own passes -> `(dx, dγ, dβ)`.
pub fn batchnorm_relu_backward(
    dy: &Tensor,
    y: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    saved: &BatchNormSaved,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batchnorm_relu_backward";
    y.expect_dtype(op, DType::F32)?;
    y.expect_shape(op, x.shape())?;
    let dgamma = Tensor::uninit(x.engine(), gamma.shape(), DType::F32)?;
    let dbeta = Tensor::uninit(x.engine(), gamma.shape(), DType::F32)?;
    let grads = (&dgamma, &dbeta);
    let (plan, coefs) = grad_params(op, (x, dy, gamma, saved), Some(y), grads, false)?;
    let dx = plan.apply_grad(x, dy, Some(y), &coefs)?;
    Ok((dx, dgamma, dbeta))
}

/// The two statistics passes of a backward, after its shape checks: per-chunk sums of dy and
/// dy·x̂ (dy masked by a fused ReLU's output `relu_out`), then per channel dγ and dβ (written,
/// or added when `accumulate`); returns the plan and the training dx's coefficients (`[C, 4]`)
/// that the second pass also writes.
fn grad_params(
    op: &'static str,
    (x, dy, gamma, saved): (&Tensor, &Tensor, &Tensor, &BatchNormSaved),
    relu_out: Option<&Tensor>,
    (dgamma, dbeta): (&Tensor, &Tensor),
    accumulate: bool,
) -> Result<(Plan, Tensor)> {
    let per_channel = [gamma, &saved.mean, &saved.inv_std, dgamma, dbeta];
    let plan = Plan::new(op, x, &per_channel)?;
    dy.expect_dtype(op, DType::F32)?;
    dy.expect_shape(op, x.shape())?;
    let coefs = plan.per_channel(x, 4)?;
    let partials = plan.per_channel(x, 4 * plan.params.chunks as usize)?;
    let mut tensors = vec![
        Bind::read("x", x),
        Bind::read("dy", dy),
        Bind::read("mean_in", &saved.mean),
        Bind::read("inv_std_in", &saved.inv_std),
        Bind::write("part_out", &partials),
    ];
    tensors.extend(relu_out.map(|y| Bind::read("y", y)));
    let pass = backward_pass(relu_out);
    plan.launch("grad_stats", &[], &tensors, false, pass)?;
    let acc = [("ACCUMULATE", accumulate as u8 as f64)];
    let tensors = [
        Bind::read("gamma", gamma),
        Bind::read("mean_in", &saved.mean),
        Bind::read("inv_std_in", &saved.inv_std),
        Bind::read("partials", &partials),
        Bind::write("coef_out", &coefs),
        Bind::write("dgamma", dgamma),
        Bind::write("dbeta", dbeta),
    ];
    plan.launch("grad_finalize", &acc, &tensors, true, pass)?;
    Ok((plan, coefs))
}

/// What [`batchnorm_eval_saving`] keeps for the backward of an eval-mode batch norm: the running
/// statistics as the forward read them (`stats.mean` the running mean, `stats.inv_std`
/// 1/sqrt(running var + eps), f32 `[C]`) and dx's per-channel slope γ/sqrt(running var + eps).
#[derive(Clone, Debug)]
pub struct BatchNormEvalSaved {
    pub stats: BatchNormSaved,
    /// `[C, 4]`: (0, slope, 0, 0) per channel, apply's coefficients for dx = slope·dy.
    dx_coefs: Tensor,
}

/// [`batchnorm_eval`] that also returns what its backward needs: the same y (bit for bit),
/// two dispatches as well. The running statistics are copied as read, so a later training step
/// that updates them in place does not change the gradient of this forward.
pub fn batchnorm_eval_saving(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchNormEvalSaved)> {
    let op = "batchnorm_eval";
    let mut plan = Plan::new(op, x, &[gamma, beta, running_mean, running_var])?;
    check_config(op, eps, 0.0)?;
    plan.params.eps = eps as f32;
    let (coefs, dx_coefs) = (plan.per_channel(x, 4)?, plan.per_channel(x, 4)?);
    let mean = Tensor::uninit(x.engine(), gamma.shape(), DType::F32)?;
    let inv_std = Tensor::uninit(x.engine(), gamma.shape(), DType::F32)?;
    let tensors = [
        Bind::read("gamma", gamma),
        Bind::read("beta", beta),
        Bind::read("mean_in", running_mean),
        Bind::read("var_in", running_var),
        Bind::write("part_out", &dx_coefs),
        Bind::write("coef_out", &coefs),
        Bind::write("saved_mean", &mean),
        Bind::write("saved_inv_std", &inv_std),
    ];
    plan.launch("eval_coefs_saving", &[], &tensors, true, Pass::Forward)?;
    let y = plan.apply(x, &coefs, Activation::None)?;
    let stats = BatchNormSaved { mean, inv_std };
    Ok((y, BatchNormEvalSaved { stats, dx_coefs }))
}

/// Input gradient of the eval forward, `dy: [B, C, H, W] -> dx` (or `[B, F]`):
/// `dx = γ/sqrt(running var + eps)·dy` per channel, one pass over dy. The statistics are
/// constants in eval mode, so dx has none of the training backward's mean terms.
pub fn batchnorm_eval_backward_input(dy: &Tensor, saved: &BatchNormEvalSaved) -> Result<Tensor> {
    let plan = Plan::new("batchnorm_eval_backward", dy, &[&saved.stats.mean])?;
    // apply computes (x − 0)·slope + 0 with dy in x's place.
    plan.apply(dy, &saved.dx_coefs, Activation::None)
}

/// Parameter gradients of the eval forward given `dy` and its input `x`: `dβ = Σ dy` and
/// `dγ = Σ dy·(x − running mean)/sqrt(running var + eps)` per channel, written into `dgamma`
/// and `dbeta` (f32 `[C]`), or added to them when `accumulate`. Two passes (the training
/// backward's statistics passes on the saved running statistics).
pub fn batchnorm_eval_backward_params_into(
    dy: &Tensor,
    x: &Tensor,
    gamma: &Tensor,
    saved: &BatchNormEvalSaved,
    dgamma: &Tensor,
    dbeta: &Tensor,
    accumulate: bool,
) -> Result<()> {
    // The training dx's coefficients that grad_finalize also writes are unused here.
    let op = "batchnorm_eval_backward";
    let inputs = (x, dy, gamma, &saved.stats);
    grad_params(op, inputs, None, (dgamma, dbeta), accumulate).map(|_| ())
}
