//! The differentiable ops: each one's forward (a method on `Var`) and, in `Op::backward`, its
//! gradient rule — forward and backward side by side, one `match` for the whole backward.

use super::{Grads, Param, Var};
use crate::engine::{DType, Error, Result, Tensor};
use crate::kernels::batchnorm::{self as bn, BatchNormConfig, BatchNormEvalSaved, BatchNormSaved};
use crate::kernels::conv_transpose2d::ConvTranspose2dParams;
use crate::kernels::conv2d::{self as conv, Conv, Conv2dParams, Saved, TapSource, WeightGrad};
use crate::kernels::elementwise::{self as ew, Binary, Broadcast, Unary};
use crate::kernels::gated;
use crate::kernels::masked_conv::Taps;
use crate::kernels::matmul::{self, Matmul};
use crate::kernels::mdn::{self, MdnLoss};
use crate::kernels::reduce::{self, Reduce};
use crate::kernels::{kl, layout, losses, softmax};

/// What produced a value, with the ids of its inputs.
pub(crate) enum Op {
    Input,
    Param(Param),
    /// y = x·Wᵀ + b (W stored [out, in] as in PyTorch), ReLU'd if `relu`.
    Linear {
        x: usize,
        w: usize,
        b: Option<usize>,
        relu: bool,
    },
    Matmul {
        a: usize,
        b: usize,
        trans_a: bool,
        trans_b: bool,
    },
    Unary {
        op: Unary,
        x: usize,
    },
    /// Elementwise with broadcasting of either operand (see `elementwise::broadcast_of`).
    Binary {
        op: Binary,
        a: usize,
        b: usize,
    },
    /// y = scale·x + shift.
    Affine {
        x: usize,
        scale: f32,
    },
    /// Sum (or mean, `scale` = 1/n) of all elements, shape `[1]`.
    Total {
        x: usize,
        scale: f32,
    },
    /// z = μ + exp(½ log σ²)·ε with constant noise ε.
    Reparameterize {
        mu: usize,
        logvar: usize,
        eps: Tensor,
    },
    /// mean(a) + w·mean(b) from [`Var::mean_pair`].
    MeanPair {
        a: usize,
        b: usize,
        w: f32,
    },
    /// Per-row KL(N(μ, σ²) ‖ N(0, I)), shape `[B]`.
    KlStdNormal {
        mu: usize,
        logvar: usize,
    },
    /// The KL of [`Var::reparameterize_kl`], recorded right after its sample `z`: every use
    /// of z comes later on the tape, so when backward reaches this node z's gradient is
    /// complete, and one fused pass gives μ and log σ² both gradients (z's node then has none
    /// left to pass on).
    KlOfSample {
        mu: usize,
        logvar: usize,
        eps: Tensor,
        z: usize,
    },
    /// Per-row KL(N(μq, σq²) ‖ N(μp, σp²)), shape `[B]`.
    KlGaussians {
        mu_q: usize,
        logvar_q: usize,
        mu_p: usize,
        logvar_p: usize,
    },
    /// The mean of the precision-weighted merge (Sønderby et al. 2016, eq. 18); `w` is the
    /// bottom-up mean's weight from the forward.
    MergeMean {
        mu_q: usize,
        logvar_q: usize,
        mu_p: usize,
        logvar_p: usize,
        w: Tensor,
    },
    /// The log variance of the same merge (eq. 19).
    MergeLogvar {
        logvar_q: usize,
        logvar_p: usize,
        w: Tensor,
    },
    /// Per-row Σ BCE-with-logits, shape `[B]`; the target gets a gradient when it wants one.
    BceWithLogits {
        logits: usize,
        target: usize,
    },
    /// Row-wise log-softmax over the last axis.
    LogSoftmax {
        x: usize,
    },
    /// Row-wise log Σ exp over the last axis: `[..., K] -> [...]`.
    LogSumExp {
        x: usize,
    },
    /// Per-row cross entropy of logits `[N, K]` against constant u32 labels `[N]`, shape `[N]`.
    CrossEntropy {
        logits: usize,
        labels: Tensor,
    },
    /// Per-row loss of a mixture density network (`kernels::mdn`), shape `[B]`; the target
    /// is constant, `resp` the forward's responsibilities.
    Mdn {
        means: usize,
        logits: usize,
        target: Tensor,
        resp: Tensor,
        sigma: f32,
    },
    /// Parts joined along `axis`; `sizes` are their extents along it.
    Concat {
        parts: Vec<usize>,
        axis: usize,
        sizes: Vec<usize>,
    },
    /// The same elements in another shape (free).
    Reshape {
        x: usize,
    },
    /// [B, C, H, W] <-> [B·H·W, C]; `nchw` is the channels-first shape.
    Permute {
        x: usize,
        to_rows: bool,
        nchw: [usize; 4],
    },
    /// NCHW convolution of any tap source (dense, transposed, tap list); `saved` is what its
    /// forward kept for dw (when w wants a gradient).
    Conv {
        x: usize,
        w: usize,
        b: Option<usize>,
        plan: Conv,
        saved: Option<Saved>,
    },
    /// Batch normalisation with batch statistics (training mode), followed by a ReLU in the
    /// same passes when `relu`.
    BatchNorm {
        x: usize,
        gamma: usize,
        beta: usize,
        saved: BatchNormSaved,
        relu: bool,
    },
    /// Batch normalisation with running statistics (evaluation mode); `saved` when a gradient
    /// was wanted at the forward.
    BatchNormEval {
        x: usize,
        gamma: usize,
        beta: usize,
        saved: Option<BatchNormEvalSaved>,
    },
    /// The last two axes swapped.
    Transpose {
        x: usize,
    },
    /// A value whose gradient goes to `x` unchanged: vector quantisation's z_q (straight-through
    /// estimator, van den Oord et al. 2017).
    StraightThrough {
        x: usize,
    },
    /// A codebook or commitment loss of vector quantisation (`tape::vq`).
    VqLoss(super::vq::VqLoss),
    /// `x[.., start..start + len, ..]` along `axis` (len is the output's extent).
    Slice {
        x: usize,
        axis: usize,
        start: usize,
    },
    /// tanh(a + ca)·σ(b + cb) over the channel halves [a, b] of x (gated PixelCNN).
    Gated {
        x: usize,
        cond: Option<usize>,
    },
}

fn flag_error(op: &'static str) -> Error {
    Error::bad(
        op,
        "only add, sub, mul and div are differentiable binary ops",
    )
}

impl Var {
    fn record(&self, op: Op, value: Tensor, inputs: &[&Var]) -> Result<Var> {
        for v in inputs {
            self.same_tape("op", v)?;
        }
        Ok(self.tape.record(op, value, inputs))
    }

    /// `self·Wᵀ + b` (ReLU'd if `relu`) for `self` `[B, in]`, `w` `[out, in]`, `b` `[out]`.
    pub fn linear(&self, w: &Var, b: Option<&Var>, relu: bool) -> Result<Var> {
        let opts = Matmul {
            trans_b: true,
            bias: b.map(|b| b.value()),
            relu,
            ..Default::default()
        };
        let y = matmul::matmul_with(&self.value, &w.value, &opts)?;
        let op = Op::Linear {
            x: self.id,
            w: w.id,
            b: b.map(|b| b.id),
            relu,
        };
        let mut inputs = vec![self, w];
        inputs.extend(b);
        self.record(op, y, &inputs)
    }

    /// op(self)·op(b).
    pub fn matmul(&self, b: &Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        let opts = Matmul {
            trans_a,
            trans_b,
            ..Default::default()
        };
        let y = matmul::matmul_with(&self.value, &b.value, &opts)?;
        let op = Op::Matmul {
            a: self.id,
            b: b.id,
            trans_a,
            trans_b,
        };
        self.record(op, y, &[self, b])
    }

    pub fn unary(&self, op: Unary) -> Result<Var> {
        let y = ew::unary(op, &self.value)?;
        self.record(Op::Unary { op, x: self.id }, y, &[self])
    }

    pub fn relu(&self) -> Result<Var> {
        self.unary(Unary::Relu)
    }

    pub fn exp(&self) -> Result<Var> {
        self.unary(Unary::Exp)
    }

    /// Elementwise `op` (add, sub, mul, div) with broadcasting.
    pub fn binary(&self, op: Binary, b: &Var) -> Result<Var> {
        if !matches!(op, Binary::Add | Binary::Sub | Binary::Mul | Binary::Div) {
            return Err(flag_error("binary"));
        }
        let y = ew::binary(op, &self.value, &b.value)?;
        self.record(
            Op::Binary {
                op,
                a: self.id,
                b: b.id,
            },
            y,
            &[self, b],
        )
    }

    pub fn add(&self, b: &Var) -> Result<Var> {
        self.binary(Binary::Add, b)
    }

    pub fn sub(&self, b: &Var) -> Result<Var> {
        self.binary(Binary::Sub, b)
    }

    pub fn mul(&self, b: &Var) -> Result<Var> {
        self.binary(Binary::Mul, b)
    }

    /// `scale·self + shift`.
    pub fn affine(&self, scale: f32, shift: f32) -> Result<Var> {
        let y = ew::affine(&self.value, scale, shift)?;
        self.record(Op::Affine { x: self.id, scale }, y, &[self])
    }

    /// Sum of all elements, shape `[1]`.
    pub fn sum(&self) -> Result<Var> {
        self.total(1.0)
    }

    /// Mean of all elements, shape `[1]`.
    pub fn mean(&self) -> Result<Var> {
        self.total(1.0 / self.value.numel() as f32)
    }

    /// `mean(self) + w·mean(b)` `[1]` and the two means as constants `[1]` each (a loss and
    /// its logged terms), in one pass forward and one backward instead of six and four.
    /// `self` and `b` hold at most [`reduce::MEAN_PAIR_MAX`] values each.
    pub fn mean_pair(&self, b: &Var, w: f32) -> Result<(Var, Var, Var)> {
        let [loss, ma, mb] = reduce::mean_pair(&self.value, &b.value, w)?;
        let op = Op::MeanPair {
            a: self.id,
            b: b.id,
            w,
        };
        let loss = self.record(op, loss, &[self, b])?;
        Ok((loss, self.tape.input(&ma), self.tape.input(&mb)))
    }

    fn total(&self, scale: f32) -> Result<Var> {
        let s = reduce::sum_all(&self.value)?;
        let y = if scale == 1.0 {
            s
        } else {
            ew::affine(&s, scale, 0.0)?
        };
        self.record(Op::Total { x: self.id, scale }, y, &[self])
    }
}

impl Var {
    /// z = μ + exp(½ log σ²)·ε for `self` = μ [B, D], `logvar` [B, D] and noise `eps` [B, D].
    pub fn reparameterize(&self, logvar: &Var, eps: &Tensor) -> Result<Var> {
        let z = kl::reparameterize(&self.value, &logvar.value, eps)?;
        let op = Op::Reparameterize {
            mu: self.id,
            logvar: logvar.id,
            eps: eps.clone(),
        };
        self.record(op, z, &[self, logvar])
    }

    /// [`Var::reparameterize`] and [`Var::kl_std_normal`] of the same μ = `self`, log σ² and
    /// ε in one pass forward and one backward: `(z, KL)`, z `[B, D]`, KL `[B]`.
    pub fn reparameterize_kl(&self, logvar: &Var, eps: &Tensor) -> Result<(Var, Var)> {
        let (z, k) = kl::reparameterize_kl(&self.value, &logvar.value, eps)?;
        let sample = Op::Reparameterize {
            mu: self.id,
            logvar: logvar.id,
            eps: eps.clone(),
        };
        let z = self.record(sample, z, &[self, logvar])?;
        let op = Op::KlOfSample {
            mu: self.id,
            logvar: logvar.id,
            eps: eps.clone(),
            z: z.id,
        };
        let k = self.record(op, k, &[self, logvar])?;
        // The fused backward relies on it: nothing was recorded between the two.
        debug_assert_eq!(k.id, z.id + 1);
        Ok((z, k))
    }

    /// Per-row KL(N(μ, σ²) ‖ N(0, I)) for `self` = μ and `logvar`, shape `[B]`.
    pub fn kl_std_normal(&self, logvar: &Var) -> Result<Var> {
        let k = kl::kl_std_normal(&self.value, &logvar.value)?;
        let op = Op::KlStdNormal {
            mu: self.id,
            logvar: logvar.id,
        };
        self.record(op, k, &[self, logvar])
    }

    /// Per-row KL(N(μq, σq²) ‖ N(μp, σp²)) for `self` = μq and `logvar_q`, `mu_p`, `logvar_p`,
    /// each `[B, D]`: shape `[B]`. Gradients flow to all four (a hierarchy's layer KL against
    /// its top-down prior trains both networks).
    pub fn kl_gaussians(&self, logvar_q: &Var, mu_p: &Var, logvar_p: &Var) -> Result<Var> {
        let k = kl::kl_gaussians(&self.value, &logvar_q.value, &mu_p.value, &logvar_p.value)?;
        let op = Op::KlGaussians {
            mu_q: self.id,
            logvar_q: logvar_q.id,
            mu_p: mu_p.id,
            logvar_p: logvar_p.id,
        };
        self.record(op, k, &[self, logvar_q, mu_p, logvar_p])
    }

    /// The precision-weighted merge of the bottom-up Gaussian N(`self`, exp `logvar_q`) and the
    /// top-down N(`mu_p`, exp `logvar_p`), each `[B, D]` (Sønderby et al. 2016, eq. 17–19):
    /// returns (μ, log σ²) with σ² = 1/(σq⁻² + σp⁻²) and μ = (μq σq⁻² + μp σp⁻²)·σ². One kernel
    /// computes both; each is its own tape value with its own backward.
    pub fn precision_merge(
        &self,
        logvar_q: &Var,
        mu_p: &Var,
        logvar_p: &Var,
    ) -> Result<(Var, Var)> {
        let (mu, logvar, w) =
            kl::precision_merge(&self.value, &logvar_q.value, &mu_p.value, &logvar_p.value)?;
        let inputs = [self, logvar_q, mu_p, logvar_p];
        let op = Op::MergeMean {
            mu_q: self.id,
            logvar_q: logvar_q.id,
            mu_p: mu_p.id,
            logvar_p: logvar_p.id,
            w: w.clone(),
        };
        let mu = self.record(op, mu, &inputs)?;
        let op = Op::MergeLogvar {
            logvar_q: logvar_q.id,
            logvar_p: logvar_p.id,
            w,
        };
        let logvar = self.record(op, logvar, &[logvar_q, logvar_p])?;
        Ok((mu, logvar))
    }

    /// Per-row Σ_j BCE-with-logits(`self[j]`, `target[j]`): −log p(x|z) of a Bernoulli decoder,
    /// `[B]`.
    pub fn bce_with_logits(&self, target: &Tensor) -> Result<Var> {
        self.bce_with_logits_soft(&self.tape.input(target))
    }

    /// [`Var::bce_with_logits`] against soft targets that are themselves values on the tape
    /// (in `[0, 1]`, e.g. a decoder's output used as a target): the targets get the gradient
    /// ∂BCE/∂target = −logit per element (times the row's upstream weight).
    pub fn bce_with_logits_soft(&self, target: &Var) -> Result<Var> {
        let v = losses::bce_with_logits(&self.value, &target.value)?;
        let op = Op::BceWithLogits {
            logits: self.id,
            target: target.id,
        };
        self.record(op, v, &[self, target])
    }

    /// `self − logsumexp(self)` over the last axis (max-shifted), same shape: log-probabilities
    /// of a categorical or of mixture weights.
    pub fn log_softmax(&self) -> Result<Var> {
        let y = softmax::log_softmax(&self.value)?;
        self.record(Op::LogSoftmax { x: self.id }, y, &[self])
    }

    /// `log Σ exp(self)` over the last axis (max-shifted): `[..., K] -> [...]` (`[K] -> [1]`),
    /// e.g. the IWAE bound's log Σ_k w_k over `[B, K]` log-weights.
    pub fn logsumexp(&self) -> Result<Var> {
        let y = reduce::logsumexp_last(&self.value)?;
        self.record(Op::LogSumExp { x: self.id }, y, &[self])
    }

    /// Per-row `logsumexp(self[i]) − self[i, labels[i]]` for logits `self` `[N, K]` and u32
    /// `labels` `[N]`: −log p(label | x) of a categorical, `[N]`. A label ≥ K gives NaN for its
    /// row.
    pub fn cross_entropy(&self, labels: &Tensor) -> Result<Var> {
        let v = losses::cross_entropy_logits(&self.value, labels)?;
        let op = Op::CrossEntropy {
            logits: self.id,
            labels: labels.clone(),
        };
        self.record(op, v, &[self])
    }
}

impl Var {
    /// Per-row loss of a mixture density network with means `self` `[B, K, D]`, mixture logits
    /// `logits` `[B, K]` and K components N(μ_k, σ²I) of one fixed σ, for constant targets
    /// `target` `[B, D]`: the closest component's −log π_k + ‖z − μ_k‖²/(2σ²), or the
    /// mixture's negative log-likelihood (see `kernels::mdn`), `[B]`.
    pub fn mdn_loss(
        &self,
        logits: &Var,
        target: &Tensor,
        sigma: f32,
        mode: MdnLoss,
    ) -> Result<Var> {
        let (loss, resp) = mdn::mdn_forward(&self.value, &logits.value, target, sigma, mode)?;
        let op = Op::Mdn {
            means: self.id,
            logits: logits.id,
            target: target.clone(),
            resp,
            sigma,
        };
        self.record(op, loss, &[self, logits])
    }

    /// `parts` joined along `axis` (e.g. an image and its one-hot label for a conditional VAE).
    pub fn concat(parts: &[&Var], axis: usize) -> Result<Var> {
        let first = parts
            .first()
            .ok_or_else(|| Error::bad("concat", "no parts"))?;
        let values: Vec<&Tensor> = parts.iter().map(|v| v.value()).collect();
        let y = layout::concat(&values, axis)?;
        let op = Op::Concat {
            parts: parts.iter().map(|v| v.id).collect(),
            axis,
            sizes: parts.iter().map(|v| v.shape()[axis]).collect(),
        };
        first.record(op, y, parts)
    }

    /// The same elements as `shape` (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let y = self.value.reshape(shape)?;
        self.record(Op::Reshape { x: self.id }, y, &[self])
    }

    /// [B, C, H, W] -> [B·H·W, C]: one row of channels per pixel.
    pub fn channels_last(&self) -> Result<Var> {
        let y = layout::to_channels_last(&self.value)?;
        let s = self.shape();
        let nchw = [s[0], s[1], s[2], s[3]];
        let op = Op::Permute {
            x: self.id,
            to_rows: true,
            nchw,
        };
        self.record(op, y, &[self])
    }

    /// [B·H·W, C] -> `nchw` = [B, C, H, W]: the inverse of [`Var::channels_last`].
    pub fn channels_first(&self, nchw: [usize; 4]) -> Result<Var> {
        let y = layout::to_channels_first(&self.value, nchw)?;
        let op = Op::Permute {
            x: self.id,
            to_rows: false,
            nchw,
        };
        self.record(op, y, &[self])
    }

    /// `[..., R, C] -> [..., C, R]` (e.g. NCHW feature maps to rows of channels).
    pub fn transpose(&self) -> Result<Var> {
        let y = layout::transpose(&self.value)?;
        self.record(Op::Transpose { x: self.id }, y, &[self])
    }
}

impl Var {
    /// 2-D convolution of `self` `[B, Cin, H, W]` with `w` `[Cout, Cin, kh, kw]` (+ bias `[Cout]`).
    pub fn conv2d(&self, w: &Var, b: Option<&Var>, p: &Conv2dParams) -> Result<Var> {
        self.conv(w, b, TapSource::Dense(*p))
    }

    /// Transposed convolution of `self` `[B, Cin, H, W]` with `w` `[Cin, Cout, kh, kw]` (+ bias).
    pub fn conv_transpose2d(
        &self,
        w: &Var,
        b: Option<&Var>,
        p: &ConvTranspose2dParams,
    ) -> Result<Var> {
        self.conv(w, b, TapSource::Transposed(*p))
    }

    /// The convolution of `self` with `w` (+ bias) whose taps come from `source`; the forward
    /// keeps its column matrix (or rows) for dw when w wants a gradient.
    fn conv(&self, w: &Var, b: Option<&Var>, source: TapSource) -> Result<Var> {
        let plan = Conv::new(source, self.value.shape(), w.value.shape())?;
        let keep = self.grad_needed(&[w]);
        let (y, saved) = plan.forward(&self.value, &w.value, b.map(|b| b.value()), keep)?;
        let op = Op::Conv {
            x: self.id,
            w: w.id,
            b: b.map(|b| b.id),
            plan,
            saved,
        };
        let mut inputs = vec![self, w];
        inputs.extend(b);
        self.record(op, y, &inputs)
    }
}

impl Var {
    /// PixelCNN masked convolution of `self` [B, Cin, H, W] with `w` [Cout, taps, Cin] (+ bias
    /// `[Cout]`) reading only `taps` (see `kernels::masked_conv`): `[B, Cout, H, W]`.
    pub fn masked_conv(&self, w: &Var, b: Option<&Var>, taps: &Taps) -> Result<Var> {
        self.conv(w, b, TapSource::List(taps.clone()))
    }

    /// `self[.., range, ..]` along `axis` (e.g. the two halves of a gate's channels).
    pub fn slice(&self, axis: usize, range: std::ops::Range<usize>) -> Result<Var> {
        let start = range.start;
        let y = layout::slice(&self.value, axis, range)?;
        let op = Op::Slice {
            x: self.id,
            axis,
            start,
        };
        self.record(op, y, &[self])
    }

    /// The gated activation tanh(a + ca)·σ(b + cb) of `self` = [a, b] [B, 2p, ...] split along
    /// the channels, with `cond` [B, 2p] (per image and channel) or shaped like `self` added
    /// first: [B, p, ...] (see `kernels::gated`).
    pub fn gated(&self, cond: Option<&Var>) -> Result<Var> {
        let y = gated::gated(&self.value, cond.map(|c| c.value()))?;
        let op = Op::Gated {
            x: self.id,
            cond: cond.map(|c| c.id),
        };
        let mut inputs = vec![self];
        inputs.extend(cond);
        self.record(op, y, &inputs)
    }
}

impl Var {
    /// Batch normalisation of `self` ([B, C, H, W] or [B, F]) with the batch's statistics,
    /// updating the running statistics in place (training mode).
    pub fn batchnorm_train(
        &self,
        gamma: &Var,
        beta: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        cfg: &BatchNormConfig,
    ) -> Result<Var> {
        self.batchnorm_train_then((gamma, beta), (running_mean, running_var), cfg, false)
    }

    /// [`Var::batchnorm_train`] followed by a ReLU, fused: the same values as
    /// `batchnorm_train(…)?.relu()` with one pass fewer forward and two fewer backward.
    pub fn batchnorm_relu_train(
        &self,
        gamma: &Var,
        beta: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        cfg: &BatchNormConfig,
    ) -> Result<Var> {
        self.batchnorm_train_then((gamma, beta), (running_mean, running_var), cfg, true)
    }

    fn batchnorm_train_then(
        &self,
        (gamma, beta): (&Var, &Var),
        (running_mean, running_var): (&Tensor, &Tensor),
        cfg: &BatchNormConfig,
        relu: bool,
    ) -> Result<Var> {
        let train = match relu {
            true => bn::batchnorm_relu_train,
            false => bn::batchnorm_train,
        };
        let (g, b) = (&gamma.value, &beta.value);
        let (y, saved) = train(&self.value, g, b, running_mean, running_var, cfg)?;
        let op = Op::BatchNorm {
            x: self.id,
            gamma: gamma.id,
            beta: beta.id,
            saved,
            relu,
        };
        self.record(op, y, &[self, gamma, beta])
    }

    /// Batch normalisation with the running statistics (evaluation mode), which stay constant:
    /// differentiable w.r.t. `self` (a frozen network inside a loss) and γ, β. The running
    /// statistics are copied as read when a gradient is wanted, so updating them before the
    /// backward does not change it.
    pub fn batchnorm_eval(
        &self,
        gamma: &Var,
        beta: &Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f64,
    ) -> Result<Var> {
        let (x, g, b) = (&self.value, &gamma.value, &beta.value);
        let (y, saved) = if self.grad_needed(&[gamma, beta]) {
            let (y, saved) = bn::batchnorm_eval_saving(x, g, b, running_mean, running_var, eps)?;
            (y, Some(saved))
        } else {
            (
                bn::batchnorm_eval(x, g, b, running_mean, running_var, eps)?,
                None,
            )
        };
        let op = Op::BatchNormEval {
            x: self.id,
            gamma: gamma.id,
            beta: beta.id,
            saved,
        };
        self.record(op, y, &[self, gamma, beta])
    }
}

/// The backward of a convolution: dx and dw (straight into the weight's slot, from what the
/// forward kept) from one pass of the plan, and db = Σ g over batch and pixels.
fn conv_backward(
    gr: &mut Grads,
    (x, w, b): (usize, usize, Option<usize>),
    g: &Tensor,
    plan: &Conv,
    saved: Option<&Saved>,
) -> Result<()> {
    let wv = gr.value(w).clone();
    let w_for_dx = gr.wants(x).then_some(&wv);
    let mut dx = None;
    if gr.wants(w) {
        let saved = saved.ok_or_else(|| Error::bad("conv backward", "the forward kept nothing"))?;
        gr.give_with(w, wv.shape(), |into, accumulate| {
            let dw = WeightGrad {
                saved,
                into,
                accumulate,
            };
            dx = plan.backward(g, w_for_dx, Some(dw))?;
            Ok(())
        })?;
    } else if w_for_dx.is_some() {
        dx = plan.backward(g, w_for_dx, None)?;
    }
    if let Some(dx) = dx {
        gr.give(x, dx)?;
    }
    if let Some(b) = b {
        gr.give(b, conv::bias_grad(g)?)?;
    }
    Ok(())
}

/// Sums `g` (shaped like the broadcast output) back to an operand of `shape`.
fn unbroadcast(g: Tensor, shape: &[usize]) -> Result<Tensor> {
    let mode = ew::broadcast_of(shape, g.shape()).expect("forward checked the broadcast");
    let cols = *g.shape().last().unwrap();
    let rows = g.numel() / cols;
    let summed = match mode {
        Broadcast::Full => return Ok(g),
        Broadcast::Row => reduce::reduce_first(Reduce::Sum, &g.reshape(&[rows, cols])?)?,
        Broadcast::Column => reduce::reduce_last(Reduce::Sum, &g.reshape(&[rows, cols])?)?,
        Broadcast::Scalar => reduce::sum_all(&g)?,
    };
    summed.reshape(shape)
}

impl Op {
    /// Gives each input its share of `g`, the gradient of this op's output `y`.
    pub(crate) fn backward(&self, gr: &mut Grads, y: &Tensor, g: Tensor) -> Result<()> {
        match *self {
            Op::Input | Op::Param(_) => Ok(()),
            Op::Linear { x, w, b, relu } => {
                let g = if relu {
                    ew::binary(Binary::MaskPositive, &g, y)?
                } else {
                    g
                };
                let (xv, wv) = (gr.value(x).clone(), gr.value(w).clone());
                // dX = G·W ([B, out]·[out, in]); dW = Gᵀ·X ([out, B]·[B, in]); db = Σ_rows G.
                gr.give_with(x, xv.shape(), |t, acc| {
                    matmul::matmul_into(
                        &g,
                        &wv,
                        &Matmul {
                            accumulate: acc,
                            ..Default::default()
                        },
                        t,
                    )
                })?;
                gr.give_with(w, wv.shape(), |t, acc| {
                    let o = Matmul {
                        trans_a: true,
                        accumulate: acc,
                        ..Default::default()
                    };
                    matmul::matmul_into(&g, &xv, &o, t)
                })?;
                if let Some(b) = b {
                    gr.give_with(b, &[y.shape()[1]], |t, acc| {
                        if acc {
                            ew::accumulate(t, &reduce::reduce_first(Reduce::Sum, &g)?, 1.0)
                        } else {
                            reduce::reduce_first_into(Reduce::Sum, &g, t)
                        }
                    })?;
                }
                Ok(())
            }
            Op::Matmul {
                a,
                b,
                trans_a,
                trans_b,
            } => {
                let (av, bv) = (gr.value(a).clone(), gr.value(b).clone());
                let mm = |x: &Tensor, y: &Tensor, ta: bool, tb: bool, t: &Tensor, acc: bool| {
                    let o = Matmul {
                        trans_a: ta,
                        trans_b: tb,
                        accumulate: acc,
                        ..Default::default()
                    };
                    matmul::matmul_into(x, y, &o, t)
                };
                // d op(A) = G·op(B)ᵀ and d op(B) = op(A)ᵀ·G, written in each operand's storage order.
                gr.give_with(a, av.shape(), |t, acc| {
                    if trans_a {
                        mm(&bv, &g, trans_b, true, t, acc)
                    } else {
                        mm(&g, &bv, false, !trans_b, t, acc)
                    }
                })?;
                gr.give_with(b, bv.shape(), |t, acc| {
                    if trans_b {
                        mm(&g, &av, true, trans_a, t, acc)
                    } else {
                        mm(&av, &g, !trans_a, false, t, acc)
                    }
                })
            }
            Op::Unary { op, x } => {
                let xv = gr.value(x).clone();
                let dx = unary_grad(op, &xv, y, &g)?;
                gr.give(x, dx)
            }
            Op::Binary { op, a, b } => {
                let (av, bv) = (gr.value(a).clone(), gr.value(b).clone());
                let (da, db) = match op {
                    Binary::Add => (g.clone(), g),
                    Binary::Sub => (g.clone(), ew::affine(&g, -1.0, 0.0)?),
                    Binary::Mul => (
                        ew::binary(Binary::Mul, &g, &bv)?,
                        ew::binary(Binary::Mul, &g, &av)?,
                    ),
                    Binary::Div => {
                        // d(a/b)/da = 1/b and d(a/b)/db = −a/b² = −(1/b)·y.
                        let da = ew::binary(Binary::Div, &g, &bv)?;
                        let db = ew::binary(Binary::Mul, &da, y)?;
                        (da, ew::affine(&db, -1.0, 0.0)?)
                    }
                    _ => return Err(flag_error("binary backward")),
                };
                if gr.wants(a) {
                    gr.give(a, unbroadcast(da, av.shape())?)?;
                }
                if gr.wants(b) {
                    gr.give(b, unbroadcast(db, bv.shape())?)?;
                }
                Ok(())
            }
            Op::Affine { x, scale } => {
                let dx = ew::affine(&g, scale, 0.0)?;
                gr.give(x, dx)
            }
            Op::Reparameterize {
                mu,
                logvar,
                ref eps,
            } => {
                let lv = gr.value(logvar).clone();
                let (dmu, dlv) = kl::reparameterize_backward(&lv, eps, &g)?;
                gr.give(mu, dmu)?;
                gr.give(logvar, dlv)
            }
            Op::MeanPair { a, b, w } => {
                let (av, bv) = (gr.value(a).clone(), gr.value(b).clone());
                let [da, db] = reduce::mean_pair_backward(&g, &av, &bv, w)?;
                gr.give(a, da)?;
                gr.give(b, db)
            }
            Op::KlStdNormal { mu, logvar } => {
                let (m, lv) = (gr.value(mu).clone(), gr.value(logvar).clone());
                let (dmu, dlv) = kl::kl_std_normal_backward(&m, &lv, &g)?;
                gr.give(mu, dmu)?;
                gr.give(logvar, dlv)
            }
            Op::KlOfSample {
                mu,
                logvar,
                ref eps,
                z,
            } => {
                let (m, lv) = (gr.value(mu).clone(), gr.value(logvar).clone());
                // z's gradient, complete (its uses all come later on the tape): taken, so z's
                // own backward does not pass it on a second time.
                let (dmu, dlv) = match gr.take(z) {
                    Some(dz) => {
                        let w = kl::Weight::PerRow(&g);
                        kl::reparameterize_kl_backward(&m, &lv, eps, &dz, w)?
                    }
                    None => kl::kl_std_normal_backward(&m, &lv, &g)?,
                };
                gr.give(mu, dmu)?;
                gr.give(logvar, dlv)
            }
            Op::KlGaussians {
                mu_q,
                logvar_q,
                mu_p,
                logvar_p,
            } => {
                let v = |id| gr.value(id).clone();
                let (mq, lq, mp, lp) = (v(mu_q), v(logvar_q), v(mu_p), v(logvar_p));
                let (dmq, dlq, dmp, dlp) = kl::kl_gaussians_backward(&mq, &lq, &mp, &lp, &g)?;
                gr.give(mu_q, dmq)?;
                gr.give(logvar_q, dlq)?;
                gr.give(mu_p, dmp)?;
                gr.give(logvar_p, dlp)
            }
            Op::MergeMean {
                mu_q,
                logvar_q,
                mu_p,
                logvar_p,
                ref w,
            } => {
                let (mq, mp) = (gr.value(mu_q).clone(), gr.value(mu_p).clone());
                let (dmq, dlq, dmp, dlp) = kl::precision_merge_backward_mean(&mq, &mp, w, &g)?;
                gr.give(mu_q, dmq)?;
                gr.give(logvar_q, dlq)?;
                gr.give(mu_p, dmp)?;
                gr.give(logvar_p, dlp)
            }
            Op::MergeLogvar {
                logvar_q,
                logvar_p,
                ref w,
            } => {
                let (dlq, dlp) = kl::precision_merge_backward_logvar(w, &g)?;
                gr.give(logvar_q, dlq)?;
                gr.give(logvar_p, dlp)
            }
            Op::BceWithLogits { logits, target } => {
                let (l, t) = (gr.value(logits).clone(), gr.value(target).clone());
                match (gr.wants(logits), gr.wants(target)) {
                    (true, true) => {
                        let (dl, dt) = losses::bce_with_logits_backward_both(&l, &t, &g)?;
                        gr.give(logits, dl)?;
                        gr.give(target, dt)
                    }
                    (true, false) => gr.give(logits, losses::bce_with_logits_backward(&l, &t, &g)?),
                    (false, true) => {
                        let dt = losses::bce_with_logits_backward_target(&l, &t, &g)?;
                        gr.give(target, dt)
                    }
                    (false, false) => Ok(()),
                }
            }
            Op::LogSoftmax { x } => gr.give(x, softmax::log_softmax_backward(y, &g)?),
            Op::LogSumExp { x } => {
                let xv = gr.value(x).clone();
                gr.give(x, softmax::logsumexp_last_backward(&xv, &g)?)
            }
            Op::Mdn {
                means,
                logits,
                ref target,
                ref resp,
                sigma,
            } => {
                let (m, l) = (gr.value(means).clone(), gr.value(logits).clone());
                let (dm, dl) = mdn::mdn_backward(&m, &l, target, resp, &g, sigma)?;
                gr.give(means, dm)?;
                gr.give(logits, dl)
            }
            Op::CrossEntropy { logits, ref labels } => {
                let l = gr.value(logits).clone();
                let d = losses::cross_entropy_logits_backward(&l, labels, &g)?;
                gr.give(logits, d)
            }
            Op::Concat {
                ref parts,
                axis,
                ref sizes,
            } => {
                let mut start = 0;
                for (&id, &len) in parts.iter().zip(sizes) {
                    if gr.wants(id) {
                        gr.give(id, layout::slice(&g, axis, start..start + len)?)?;
                    }
                    start += len;
                }
                Ok(())
            }
            Op::Reshape { x } => {
                let shape = gr.value(x).shape().to_vec();
                gr.give(x, g.reshape(&shape)?)
            }
            Op::Permute { x, to_rows, nchw } => match to_rows {
                true => gr.give(x, layout::to_channels_first(&g, nchw)?),
                false => gr.give(x, layout::to_channels_last(&g)?),
            },
            Op::Conv {
                x,
                w,
                b,
                ref plan,
                ref saved,
            } => conv_backward(gr, (x, w, b), &g, plan, saved.as_ref()),
            Op::Transpose { x } => gr.give(x, layout::transpose(&g)?),
            Op::StraightThrough { x } => gr.give(x, g),
            Op::VqLoss(ref loss) => loss.backward(gr, &g),
            Op::BatchNorm {
                x,
                gamma,
                beta,
                ref saved,
                relu,
            } => {
                let (xv, gv) = (gr.value(x).clone(), gr.value(gamma).clone());
                let (dx, dgamma, dbeta) = match relu {
                    true => bn::batchnorm_relu_backward(&g, y, &xv, &gv, saved)?,
                    false => bn::batchnorm_backward(&g, &xv, &gv, saved)?,
                };
                gr.give(x, dx)?;
                gr.give(gamma, dgamma)?;
                gr.give(beta, dbeta)
            }
            Op::BatchNormEval {
                x,
                gamma,
                beta,
                ref saved,
            } => {
                // Recorded without `saved` only when no input wanted a gradient, and then
                // backward never reaches this node.
                let saved = saved.as_ref().ok_or_else(|| {
                    Error::bad("batchnorm_eval backward", "the forward kept no statistics")
                })?;
                if gr.wants(x) {
                    gr.give(x, bn::batchnorm_eval_backward_input(&g, saved)?)?;
                }
                if !(gr.wants(gamma) || gr.wants(beta)) {
                    return Ok(());
                }
                let (xv, gv) = (gr.value(x).clone(), gr.value(gamma).clone());
                let new = || Tensor::uninit(gv.engine(), gv.shape(), DType::F32);
                let (dgamma, dbeta) = (new()?, new()?);
                bn::batchnorm_eval_backward_params_into(
                    &g, &xv, &gv, saved, &dgamma, &dbeta, false,
                )?;
                gr.give(gamma, dgamma)?;
                gr.give(beta, dbeta)
            }
            Op::Slice { x, axis, start } => {
                // The gradient lands in its range of a zeroed tensor shaped like x.
                let xv = gr.value(x);
                let dx = Tensor::zeros(xv.engine(), xv.shape(), DType::F32)?;
                layout::copy_along(&g, &dx, axis, 0, start, g.shape()[axis])?;
                gr.give(x, dx)
            }
            Op::Gated { x, cond } => {
                let xv = gr.value(x).clone();
                let cv = cond.map(|c| gr.value(c).clone());
                let (dx, dc) = gated::gated_backward(&xv, cv.as_ref(), &g)?;
                gr.give(x, dx)?;
                match (cond, dc) {
                    (Some(c), Some(dc)) => gr.give(c, dc),
                    _ => Ok(()),
                }
            }
            Op::Total { x, scale } => {
                let xv = gr.value(x).clone();
                gr.give_with(x, xv.shape(), |t, acc| {
                    if acc {
                        ew::accumulate(t, &g, scale)
                    } else {
                        ew::affine_into(&g, scale, 0.0, t)
                    }
                })
            }
        }
    }
}

/// dx for y = op(x), from the saved x and y.
fn unary_grad(op: Unary, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    use Binary::{Div, Mul};
    let mul = |a: &Tensor, b: &Tensor| ew::binary(Mul, a, b);
    match op {
        Unary::Neg => ew::affine(g, -1.0, 0.0),
        Unary::Exp => mul(g, y),
        Unary::Log => ew::binary(Div, g, x),
        // d sqrt(x) = 1 / (2 sqrt(x)).
        Unary::Sqrt => ew::affine(&ew::binary(Div, g, y)?, 0.5, 0.0),
        Unary::Relu => ew::binary(Binary::MaskPositive, g, y),
        Unary::LeakyRelu => ew::binary(Binary::MaskLeaky, g, y),
        // σ' = σ(1 − σ).
        Unary::Sigmoid => mul(g, &mul(y, &ew::affine(y, -1.0, 1.0)?)?),
        // tanh' = 1 − tanh².
        Unary::Tanh => mul(g, &ew::affine(&ew::unary(Unary::Square, y)?, -1.0, 1.0)?),
        // softplus' = σ(x).
        Unary::Softplus => mul(g, &ew::unary(Unary::Sigmoid, x)?),
        Unary::Square => ew::affine(&mul(g, x)?, 2.0, 0.0),
    }
}
