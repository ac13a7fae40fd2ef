//! What the deep latent hierarchies (Ladder VAE, BIVA) share: dense blocks and Gaussian heads,
//! one pass's stochastic layers with their priors and KL terms, the training objective for the
//! one [`Trainer`] (linear KL warm-up, free bits) and the lecture's pictures of a hierarchy.
//! Tests: `tests/hierarchy.rs`.

use super::likelihood::{LayerInfo, Likelihood, Noise, Sampled, Stochastic, repeat_rows};
use crate::engine::{DType, Engine, Result, Tensor};
use crate::io;
use crate::kernels::elementwise::{self as ew, Unary};
use crate::nn::{BatchNorm, Linear, Module};
use crate::optim::{Batch, KlSchedule, StepInfo, Terms, TrainConfig, Trainable, Trainer};
use crate::tape::{Tape, Var};
use std::path::Path;

/// The names of the per-level KL terms a hierarchy logs, bottom first (at most this many levels).
pub const KL_TERMS: [&str; 8] = [
    "kl_z1", "kl_z2", "kl_z3", "kl_z4", "kl_z5", "kl_z6", "kl_z7", "kl_z8",
];

/// The evaluator's layer names and widths for stochastic layers of `units`, bottom first.
pub fn layer_infos(units: &[usize]) -> Vec<LayerInfo> {
    units
        .iter()
        .enumerate()
        .map(|(i, &u)| LayerInfo {
            name: format!("z{}", i + 1),
            units: u,
        })
        .collect()
}

/// Two dense layers, each Linear → batch norm (optional) → leaky ReLU (Sønderby et al. 2016).
pub struct Dense {
    layers: Vec<(Linear, Option<BatchNorm>)>,
}

impl Dense {
    /// `inputs` → `width` → `width`; layer seeds from `seed`.
    pub fn new(
        engine: &Engine,
        name: &str,
        inputs: usize,
        width: usize,
        batchnorm: bool,
        seed: &mut impl FnMut() -> u64,
    ) -> Result<Dense> {
        let mut layers = Vec::with_capacity(2);
        for (j, from) in [inputs, width].into_iter().enumerate() {
            let lin = Linear::new(engine, &format!("{name}.{j}"), from, width, seed())?;
            let bn = batchnorm
                .then(|| BatchNorm::new(engine, &format!("{name}.bn{j}"), width))
                .transpose()?;
            layers.push((lin, bn));
        }
        Ok(Dense { layers })
    }

    /// `x` `[N, inputs]` -> `[N, width]`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for (lin, bn) in &self.layers {
            h = lin.forward(&h, false)?;
            if let Some(bn) = bn {
                h = bn.forward(&h)?;
            }
            h = h.unary(Unary::LeakyRelu)?;
        }
        Ok(h)
    }
}

impl Module for Dense {
    fn children(&self) -> Vec<&dyn Module> {
        let mut c: Vec<&dyn Module> = Vec::new();
        for (lin, bn) in &self.layers {
            c.push(lin);
            if let Some(bn) = bn {
                c.push(bn);
            }
        }
        c
    }
}

/// How a Gaussian head turns its second linear map `a` into log σ².
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variance {
    /// log σ² = a: unbounded, so a layer pushed hard (no warm-up, no batch norm) can reach
    /// log-variances whose exponentials overflow (the Ladder VAE's `--no-warmup --no-batchnorm`
    /// run diverged so, twice).
    Exp,
    /// σ² = softplus(a) + [`MIN_VARIANCE`] (Sønderby et al. 2016, eq. 20): σ² grows linearly,
    /// not exponentially, and never falls below the floor. The default of both hierarchies.
    #[default]
    Softplus,
}

/// The floor of σ² under [`Variance::Softplus`] (σ ≥ 0.01).
pub const MIN_VARIANCE: f32 = 1e-4;

impl Variance {
    /// log σ² from a head's raw output `a`.
    pub fn log_variance(self, a: Var) -> Result<Var> {
        match self {
            Variance::Exp => Ok(a),
            Variance::Softplus => a
                .unary(Unary::Softplus)?
                .affine(1.0, MIN_VARIANCE)?
                .unary(Unary::Log),
        }
    }

    /// The name stored in checkpoints and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Variance::Exp => "exp",
            Variance::Softplus => "softplus",
        }
    }
}

/// A diagonal Gaussian's (μ, log σ²) as two linear maps of a hidden layer.
pub struct Gaussian {
    mu: Linear,
    logvar: Linear,
    variance: Variance,
}

impl Gaussian {
    pub fn new(
        engine: &Engine,
        name: &str,
        inputs: usize,
        units: usize,
        seed: &mut impl FnMut() -> u64,
    ) -> Result<Gaussian> {
        Ok(Gaussian {
            mu: Linear::new(engine, &format!("{name}.mu"), inputs, units, seed())?,
            logvar: Linear::new(engine, &format!("{name}.logvar"), inputs, units, seed())?,
            variance: Variance::default(),
        })
    }

    /// The same head with log σ² made by `variance`.
    pub fn with_variance(mut self, variance: Variance) -> Gaussian {
        self.variance = variance;
        self
    }

    /// `h` `[N, inputs]` -> (μ, log σ²), each `[N, units]`.
    pub fn forward(&self, h: &Var) -> Result<(Var, Var)> {
        let logvar = self.variance.log_variance(self.logvar.forward(h, false)?)?;
        Ok((self.mu.forward(h, false)?, logvar))
    }
}

impl Module for Gaussian {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.mu, &self.logvar]
    }
}

/// One stochastic layer of a pass: its draw z = μ + σ·ε, the posterior and its prior
/// (`None`: N(0, I)).
pub struct LayerVars {
    pub z: Var,
    pub eps: Tensor,
    pub mu: Var,
    pub logvar: Var,
    pub prior: Option<(Var, Var)>,
    /// Whether the layer's KL may be taken in closed form: true when q(z | ·) is drawn after
    /// every layer its prior depends on (top-down). Otherwise (a bottom-up draw that the
    /// layers above depend on) the single-sample estimate log q(z) − log p(z | ·) at the draw
    /// is the unbiased term.
    pub analytic: bool,
}

/// z drawn from N(μ, σ²) with the next noise of `noise`, or z = μ (ε = 0) without noise.
pub fn gaussian_layer(
    mu: Var,
    logvar: Var,
    prior: Option<(Var, Var)>,
    noise: Option<&Noise>,
) -> Result<LayerVars> {
    let (z, eps) = match noise {
        Some(n) => {
            let eps = n.normal(mu.value().engine(), mu.shape())?;
            (mu.reparameterize(&logvar, &eps)?, eps)
        }
        None => (
            mu.clone(),
            Tensor::zeros(mu.value().engine(), mu.shape(), DType::F32)?,
        ),
    };
    Ok(LayerVars {
        z,
        eps,
        mu,
        logvar,
        prior,
        analytic: true,
    })
}

/// One pass of a hierarchy over a batch: the pixels' logits and every stochastic layer, bottom
/// first.
pub struct Pass {
    pub logits: Var,
    pub layers: Vec<LayerVars>,
}

impl Pass {
    /// The batch mean of layer `i`'s KL term, `[1]`, nats.
    pub fn kl(&self, i: usize) -> Result<Var> {
        let l = &self.layers[i];
        if l.analytic {
            return match &l.prior {
                None => l.mu.kl_std_normal(&l.logvar)?.mean(),
                Some((mp, lp)) => l.mu.kl_gaussians(&l.logvar, mp, lp)?.mean(),
            };
        }
        // log q(z) − log p(z) = ½ Σ (log σp² − log σq² − ε² + (z − μp)²/σp²), with the ε form of
        // log q (finite even where σq² underflows).
        let tape = l.z.tape();
        let eps2 = tape.input(&ew::unary(Unary::Square, &l.eps)?);
        let terms = match &l.prior {
            None => l.z.unary(Unary::Square)?.sub(&l.logvar)?,
            Some((mp, lp)) => {
                let d2 = l.z.sub(mp)?.unary(Unary::Square)?;
                let scaled = d2.mul(&lp.affine(-1.0, 0.0)?.exp()?)?;
                scaled.add(lp)?.sub(&l.logvar)?
            }
        };
        let rows = l.z.shape()[0] as f32;
        terms.sub(&eps2)?.sum()?.affine(0.5 / rows, 0.0)
    }

    /// The evaluator's view: −log p(x | z) per row and the layers' tensors (x repeated `k`
    /// times to match the pass's rows).
    pub fn sampled(self, x: &Tensor, k: usize) -> Result<Sampled> {
        let target = repeat_rows(x, k)?;
        let nll_x = crate::kernels::losses::bce_with_logits(self.logits.value(), &target)?;
        let layers = self
            .layers
            .into_iter()
            .map(|l| Stochastic {
                z: l.z.value().clone(),
                eps: l.eps,
                mu: l.mu.value().clone(),
                logvar: l.logvar.value().clone(),
                prior: l.prior.map(|(m, v)| (m.value().clone(), v.value().clone())),
            })
            .collect();
        Ok(Sampled { nll_x, layers })
    }
}

/// A deep latent hierarchy: the evaluator's [`Likelihood`] plus what training and the pictures
/// need. For the pictures its generative path is a chain of `levels()` levels, each passing a
/// carrier (everything the levels below need from above) down to the next.
pub trait Hierarchy: Likelihood {
    fn engine(&self) -> &Engine;

    /// Model settings stored in checkpoints and checked on resume.
    fn describe(&self) -> Vec<(String, String)>;

    /// The names of the KL terms logged in training, one per stochastic layer, bottom first.
    fn kl_terms(&self) -> &'static [&'static str];

    /// Inference and generative pass on `x` `[B, pixels]`, each image drawn `k` times (row
    /// i·k + j is draw j of image i), noise from `noise` (`None`: every z at its mean).
    fn pass(&self, tape: &Tape, x: &Tensor, k: usize, noise: Option<&Noise>) -> Result<Pass>;

    /// Levels of the generative chain.
    fn levels(&self) -> usize;

    /// `n` draws of the top level from its prior with `noise`: the carrier into level
    /// `levels() − 2`.
    fn top(&self, tape: &Tape, n: usize, noise: &Noise) -> Result<Var>;

    /// Level `level` (below the top) drawn from its prior given the `carrier` from above, with
    /// `noise` or at its prior mean without; returns the carrier into the level below.
    fn step(&self, tape: &Tape, level: usize, carrier: &Var, noise: Option<&Noise>) -> Result<Var>;

    /// Bernoulli logits of p(x | ·) from the carrier out of level 0.
    fn logits(&self, carrier: &Var) -> Result<Var>;
}

/// The checkpoint description of an MLP hierarchy: its kind, widths and batch norm.
pub fn describe_mlp(
    kind: &str,
    input: usize,
    hidden: &[usize],
    latent: &[usize],
    batchnorm: bool,
) -> Vec<(String, String)> {
    [
        ("model", kind.to_string()),
        ("input", input.to_string()),
        ("hidden", format!("{hidden:?}")),
        ("latent", format!("{latent:?}")),
        ("batchnorm", batchnorm.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// [`Likelihood::sample_layers`] of a hierarchy: its pass on a no-grad tape, k draws per image.
pub fn sample_layers<M: Hierarchy>(
    model: &M,
    x: &Tensor,
    k: usize,
    noise: &Noise,
) -> Result<Sampled> {
    let tape = Tape::no_grad(model.engine());
    model.pass(&tape, x, k, Some(noise))?.sampled(x, k)
}

/// A hierarchy with its objective: −ELBO = recon + β·Σ_i KL_i, β warmed up linearly, each
/// level's batch-mean KL held at `free_bits` nats at least (Kingma et al. 2016; 0: off).
pub struct HierarchyElbo<M: Hierarchy> {
    pub model: M,
    pub schedule: KlSchedule,
    pub free_bits: f32,
}

impl<M: Hierarchy> Module for HierarchyElbo<M> {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.model as &dyn Module]
    }
}

impl<M: Hierarchy> Trainable for HierarchyElbo<M> {
    fn engine(&self) -> &Engine {
        self.model.engine()
    }

    fn describe(&self) -> Vec<(String, String)> {
        let mut d = self.model.describe();
        d.push(("beta".into(), self.schedule.beta.to_string()));
        d.push(("warmup".into(), self.schedule.warmup.to_string()));
        d.push(("free_bits".into(), self.free_bits.to_string()));
        d
    }

    /// `loss`, `recon`, `kl` (Σ over levels) and `kl_z1`… per level, batch means in nats. The
    /// noise of step s starts at Philox block s·(blocks per step at the configured batch).
    fn losses(&self, tape: &Tape, batch: &Batch, at: &StepInfo) -> Result<Terms> {
        let per_step: u64 = (self.model.stochastic_layers().iter())
            .map(|l| crate::kernels::random::blocks(at.batch * l.units))
            .sum();
        let noise = Noise::new(at.seed, at.step * per_step);
        let pass = self.model.pass(tape, &batch.x, 1, Some(&noise))?;
        let recon = pass.logits.bce_with_logits(&batch.x)?.mean()?;
        let beta = self.schedule.weight(at.step);
        let mut terms: Terms = Vec::new();
        let (mut kl_sum, mut penalty): (Option<Var>, Option<Var>) = (None, None);
        for i in 0..pass.layers.len() {
            let kl = pass.kl(i)?;
            // Free bits: max(KL, λ) = relu(KL − λ) + λ, so a level under λ nats gets no push
            // toward the prior.
            let held = match self.free_bits {
                0.0 => kl.clone(),
                fb => kl.affine(1.0, -fb)?.relu()?.affine(1.0, fb)?,
            };
            kl_sum = Some(match kl_sum {
                None => kl.clone(),
                Some(s) => s.add(&kl)?,
            });
            penalty = Some(match penalty {
                None => held,
                Some(s) => s.add(&held)?,
            });
            terms.push((self.model.kl_terms()[i], kl));
        }
        let (kl_sum, penalty) = (kl_sum.expect("a level"), penalty.expect("a level"));
        let loss = recon.add(&penalty.affine(beta, 0.0)?)?;
        let mut all = vec![("loss", loss), ("recon", recon), ("kl", kl_sum)];
        all.extend(terms);
        Ok(all)
    }
}

/// A fresh run, or (with `resume`) the run saved there, of `model` under `config`.
pub fn trainer<M: Hierarchy>(
    objective: HierarchyElbo<M>,
    config: TrainConfig,
    examples: usize,
    resume: Option<&Path>,
) -> Result<Trainer<HierarchyElbo<M>>> {
    match resume {
        Some(path) => Trainer::resume(objective, config, examples, path),
        None => Trainer::new(objective, config, examples),
    }
}

/// Seed offset that keeps the pictures' noise apart from training and evaluation noise.
const PICTURE_STREAM: u64 = 0x91C7_0000_0000_0000;

/// The noise stream of [`ancestral_samples`].
const SAMPLE_STREAM: u64 = 0x5A3B_0000_0000_0000;

/// `n` ancestral samples as mean images `[n, pixels]` (every level drawn from its prior, top
/// down, the pixels' Bernoulli means), in chunks of 500: what the Fréchet score of a hierarchy
/// is computed on.
pub fn ancestral_samples<M: Hierarchy + ?Sized>(model: &M, n: usize, seed: u64) -> Result<Tensor> {
    if n == 0 {
        return Err(crate::engine::Error::bad(
            "ancestral_samples",
            "needs at least one sample",
        ));
    }
    model.set_training(false);
    let engine = model.engine().clone();
    let noise = Noise::new(seed ^ SAMPLE_STREAM, 0);
    let mut out = Vec::with_capacity(n * model.pixels());
    for start in (0..n).step_by(500) {
        let rows = (start + 500).min(n) - start;
        let tape = Tape::no_grad(&engine);
        let mut carrier = model.top(&tape, rows, &noise)?;
        for l in (0..model.levels() - 1).rev() {
            carrier = model.step(&tape, l, &carrier, Some(&noise))?;
        }
        let logits = model.logits(&carrier)?;
        out.extend(ew::unary(Unary::Sigmoid, logits.value())?.to_vec::<f32>()?);
    }
    Tensor::from_slice(&engine, &out, &[n, model.pixels()])
}

/// Writes the lecture's pictures of a hierarchy into `out`: `samples.png` (64 ancestral samples),
/// `reconstructions.png` (test images and their reconstructions with every z at its posterior
/// mean), and `vary_level<l>.png` per level l of the generative chain: each row holds the levels
/// above l fixed at one draw, each column draws level l anew from its prior, and the levels
/// below sit at their prior means — what level l alone encodes.
pub fn draw<M: Hierarchy + ?Sized>(
    model: &M,
    test: &crate::data::Split,
    out: &Path,
    seed: u64,
) -> Result<()> {
    model.set_training(false);
    let engine = model.engine().clone();
    let pixels = model.pixels();
    let side = (pixels as f64).sqrt() as usize;
    let top = model.levels() - 1;
    let tape = Tape::no_grad(&engine);
    let noise = Noise::new(seed ^ PICTURE_STREAM, 0);
    let mean_images = |logits: &Var| -> Result<Vec<f32>> {
        ew::unary(Unary::Sigmoid, logits.value())?.to_vec::<f32>()
    };
    // Down from `carrier` into level `from` to the logits, drawing with `noise` or at the means.
    let descend = |mut carrier: Var, from: usize, noise: Option<&Noise>| -> Result<Var> {
        for l in (0..from).rev() {
            carrier = model.step(&tape, l, &carrier, noise)?;
        }
        model.logits(&carrier)
    };
    // Ancestral samples.
    let img = mean_images(&descend(model.top(&tape, 64, &noise)?, top, Some(&noise))?)?;
    let labels = io::GridLabels {
        title: Some("samples: every level drawn from its prior, top down"),
        rows: &[],
    };
    io::save_labelled_grid(out.join("samples.png"), &img, 8, (side, side), 2, labels)?;
    // Reconstructions at the posterior means.
    let x = test.upload(&engine, 0..32)?;
    let rec = mean_images(&model.pass(&tape, &x, 1, None)?.logits)?;
    let title = "test images and their reconstructions, every z at its posterior mean";
    io::save_reconstructions(out, test.images(), &rec, side, title)?;
    // One level varied, the levels above held.
    let (rows, cols) = (8, 8);
    for l in 0..=top {
        let logits = if l == top {
            descend(model.top(&tape, rows * cols, &noise)?, top, None)?
        } else {
            // The levels above drawn once per row, level l afresh per column.
            let mut carrier = model.top(&tape, rows, &noise)?;
            for i in (l + 1..top).rev() {
                carrier = model.step(&tape, i, &carrier, Some(&noise))?;
            }
            let carrier = tape.input(&repeat_rows(carrier.value(), cols)?);
            descend(model.step(&tape, l, &carrier, Some(&noise))?, l, None)?
        };
        let img = mean_images(&logits)?;
        let title = format!(
            "level {}: varied along each row, the levels above fixed per row",
            l + 1
        );
        let labels = io::GridLabels {
            title: Some(&title),
            rows: &[],
        };
        let name = format!("vary_level{}.png", l + 1);
        io::save_labelled_grid(out.join(name), &img, cols, (side, side), 2, labels)?;
    }
    Ok(())
}
