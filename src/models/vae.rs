//! The MLP VAE of Kingma & Welling (2014) in the W1 shape of BENCH.md: encoder 784-512-256 with
//! a 256→(μ, log σ²) head, Bernoulli decoder 32-256-512-784. Trained by `examples/vae.rs`.

use crate::data::{Batches, Split};
use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::io::{self, Meta};
use crate::kernels::adam::AdamConfig;
use crate::kernels::random;
use crate::nn::{Linear, Module};
use crate::optim::{Adam, KlSchedule};
use crate::tape::{Param, Tape, Var};
use std::path::Path;

/// Layer widths. `Default` is W1: 784 → 512 → 256 → 2×32, and back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaeConfig {
    pub input: usize,
    pub hidden: Vec<usize>,
    pub latent: usize,
}

impl Default for VaeConfig {
    fn default() -> Self {
        VaeConfig {
            input: 784,
            hidden: vec![512, 256],
            latent: 32,
        }
    }
}

/// What the loss optimises (the lecture's "reconstruction only / KL only / both" pictures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    Elbo,
    ReconOnly,
    KlOnly,
}

/// The MLP VAE.
pub struct Vae {
    pub config: VaeConfig,
    encoder: Vec<Linear>,
    /// The last encoder layer (→ 2·latent) split into its μ and log σ² rows: the same layer,
    /// stored as two so neither half needs a copy.
    mu: Linear,
    logvar: Linear,
    decoder: Vec<Linear>,
}

/// Per-example terms of one batch and the scalar training loss.
pub struct Losses {
    /// mean over the batch of (recon + β·KL) for the chosen objective.
    pub loss: Var,
    /// −log p(x|z) per example, nats (BCE with logits summed over pixels).
    pub recon: Var,
    /// KL(q(z|x) ‖ N(0, I)) per example, nats.
    pub kl: Var,
    /// Batch means of `recon` and `kl`, [1] each.
    pub recon_mean: Var,
    pub kl_mean: Var,
}

impl Vae {
    /// A VAE with PyTorch-default init drawn from `seed`.
    pub fn new(engine: &Engine, config: VaeConfig, seed: u64) -> Result<Vae> {
        let mut next = seed;
        let mut layer = |name: String, i: usize, o: usize| {
            next = next.wrapping_add(0x9E37_79B9_7F4A_7C15);
            Linear::new(engine, &name, i, o, next)
        };
        let mut encoder = Vec::new();
        let mut width = config.input;
        for (i, &h) in config.hidden.iter().enumerate() {
            encoder.push(layer(format!("encoder.{i}"), width, h)?);
            width = h;
        }
        // PyTorch would init the 256→64 layer with bound 1/√256: each half gets the same bound.
        let mu = layer("encoder.mu".into(), width, config.latent)?;
        let logvar = layer("encoder.logvar".into(), width, config.latent)?;
        let mut decoder = Vec::new();
        let mut width = config.latent;
        for (i, &h) in config.hidden.iter().rev().enumerate() {
            decoder.push(layer(format!("decoder.{i}"), width, h)?);
            width = h;
        }
        decoder.push(layer(
            format!("decoder.{}", config.hidden.len()),
            width,
            config.input,
        )?);
        Ok(Vae {
            config,
            encoder,
            mu,
            logvar,
            decoder,
        })
    }

    /// q(z|x): (μ, log σ²), each [B, latent].
    pub fn encode(&self, x: &Var) -> Result<(Var, Var)> {
        let mut h = x.clone();
        for l in &self.encoder {
            h = l.forward(&h, true)?;
        }
        Ok((self.mu.forward(&h, false)?, self.logvar.forward(&h, false)?))
    }

    /// Bernoulli logits of p(x|z), [B, input].
    pub fn decode(&self, z: &Var) -> Result<Var> {
        let mut h = z.clone();
        let last = self.decoder.len() - 1;
        for (i, l) in self.decoder.iter().enumerate() {
            h = l.forward(&h, i < last)?;
        }
        Ok(h)
    }

    /// The loss of a batch `x` [B, input] in [0, 1] with noise `eps` [B, latent].
    pub fn losses(
        &self,
        tape: &Tape,
        x: &Tensor,
        eps: &Tensor,
        beta: f32,
        objective: Objective,
    ) -> Result<Losses> {
        let xv = tape.input(x);
        let (mu, logvar) = self.encode(&xv)?;
        let z = mu.reparameterize(&logvar, eps)?;
        let logits = self.decode(&z)?;
        let recon = logits.bce_with_logits(x)?;
        let kl = mu.kl_std_normal(&logvar)?;
        let (recon_mean, kl_mean) = (recon.mean()?, kl.mean()?);
        let loss = match objective {
            Objective::Elbo => recon_mean.add(&kl_mean.affine(beta, 0.0)?)?,
            Objective::ReconOnly => recon_mean.clone(),
            Objective::KlOnly => kl_mean.clone(),
        };
        Ok(Losses {
            loss,
            recon,
            kl,
            recon_mean,
            kl_mean,
        })
    }

    /// Standard-normal noise for a batch: stream `seed`, elements from `offset`.
    pub fn noise(&self, engine: &Engine, batch: usize, seed: u64, offset: u64) -> Result<Tensor> {
        random::normal(engine, &[batch, self.config.latent], seed, offset)
    }

    /// An empty f32 batch of inputs (for callers that fill it on the GPU).
    pub fn input_batch(&self, engine: &Engine, batch: usize) -> Result<Tensor> {
        Tensor::uninit(engine, &[batch, self.config.input], DType::F32)
    }
}

impl Module for Vae {
    fn params(&self) -> Vec<Param> {
        let mut p = Vec::new();
        for l in self
            .encoder
            .iter()
            .chain([&self.mu, &self.logvar])
            .chain(&self.decoder)
        {
            p.extend(l.params());
        }
        p
    }
}

/// How a run trains; stored in the checkpoint so that a resume continues the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    pub batch: usize,
    pub lr: f64,
    pub beta: f32,
    /// Steps of linear KL warm-up (0: none).
    pub warmup: u64,
    pub seed: u64,
    pub objective: Objective,
    pub binarize: bool,
}

/// Statistics of one epoch, read back once at its end.
#[derive(Clone, Debug)]
pub struct EpochStats {
    pub epoch: u64,
    pub steps: usize,
    /// Means over the epoch's steps of the training loss, reconstruction and KL (nats/image).
    pub loss: f64,
    pub recon: f64,
    pub kl: f64,
    pub images_per_second: f64,
}

/// Training state: model, optimizer and the counters that make a run replayable.
pub struct Trainer {
    pub vae: Vae,
    pub adam: Adam,
    pub settings: TrainSettings,
    schedule: KlSchedule,
    batches: Batches,
    /// Steps taken over all epochs (ε of step s is Philox stream `seed`, from block s·blocks(B·latent)).
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
}

impl Trainer {
    /// A fresh run: model initialised from `settings.seed`, Adam with PyTorch's defaults and `lr`.
    pub fn new(
        engine: &Engine,
        config: VaeConfig,
        settings: &TrainSettings,
        train_len: usize,
    ) -> Result<Trainer> {
        let vae = Vae::new(engine, config, settings.seed)?;
        let adam = Adam::new(
            vae.params(),
            AdamConfig {
                lr: settings.lr,
                ..Default::default()
            },
        )?;
        Ok(Trainer {
            vae,
            adam,
            settings: settings.clone(),
            schedule: KlSchedule {
                beta: settings.beta,
                warmup: settings.warmup,
            },
            batches: Batches::new(train_len, settings.batch, settings.seed)?
                .binarize(settings.binarize),
            step: 0,
            epoch: 0,
        })
    }

    /// Continues the run saved in `path`; the settings and model shape must match it.
    pub fn resume(
        engine: &Engine,
        path: &Path,
        settings: &TrainSettings,
        train_len: usize,
    ) -> Result<Trainer> {
        let ck = io::load(path)?;
        let config = VaeConfig {
            input: ck.meta_parse("input")?,
            hidden: parse_list(ck.meta("hidden")?)?,
            latent: ck.meta_parse("latent")?,
        };
        let mut t = Trainer::new(engine, config.clone(), settings, train_len)?;
        let saved = t.meta();
        for (key, want) in &saved {
            if matches!(key.as_str(), "step" | "epoch") {
                continue;
            }
            let got = ck.meta(key)?;
            if got != want {
                return Err(Error::bad(
                    "resume",
                    format!(
                        "{} was saved with {key} = {got}, this run asks for {want}",
                        path.display()
                    ),
                ));
            }
        }
        let named = t.named();
        ck.restore(&refs(&named))?;
        t.step = ck.meta_parse("step")?;
        t.epoch = ck.meta_parse("epoch")?;
        t.adam.set_steps(t.step);
        Ok(t)
    }

    /// Saves parameters, Adam moments and counters atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let named = self.named();
        let meta: Meta = self.meta().into_iter().collect();
        io::save(path, &refs(&named), &meta)
    }

    fn named(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vae
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.value().clone()))
            .collect();
        v.extend(self.adam.state());
        v
    }

    fn meta(&self) -> Vec<(String, String)> {
        let (c, s) = (&self.vae.config, &self.settings);
        [
            ("model", "mlp-vae".to_string()),
            ("input", c.input.to_string()),
            ("hidden", format!("{:?}", c.hidden)),
            ("latent", c.latent.to_string()),
            ("batch", s.batch.to_string()),
            ("lr", s.lr.to_string()),
            ("beta", s.beta.to_string()),
            ("warmup", s.warmup.to_string()),
            ("seed", s.seed.to_string()),
            ("objective", format!("{:?}", s.objective)),
            ("binarize", s.binarize.to_string()),
            ("step", self.step.to_string()),
            ("epoch", self.epoch.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Records one training step on batch `x` [B, input] (noise, forward, backward, Adam) into
    /// the pending encoder without submitting or reading anything back.
    pub fn train_step(&mut self, x: &Tensor) -> Result<Losses> {
        let engine = x.engine();
        let b = x.shape()[0];
        let noise_blocks = random::blocks(self.settings.batch * self.vae.config.latent);
        let eps = self
            .vae
            .noise(engine, b, self.settings.seed, self.step * noise_blocks)?;
        let tape = Tape::new(engine);
        let beta = self.schedule.weight(self.step);
        let l = self
            .vae
            .losses(&tape, x, &eps, beta, self.settings.objective)?;
        tape.backward(&l.loss)?;
        self.adam.step()?;
        self.step += 1;
        Ok(l)
    }

    /// One epoch over `train` in the epoch's seeded order. Each step is recorded and submitted
    /// as one command buffer with no readback; the step losses are copied into a GPU log read
    /// once at the end, where a non-finite loss stops training with the step named.
    pub fn train_epoch(&mut self, train: &Split) -> Result<EpochStats> {
        let engine = self.vae.mu.weight.value().engine().clone();
        let epoch = self.batches.epoch(self.epoch);
        let steps = epoch.len();
        let log = Tensor::zeros(&engine, &[3, steps], DType::F32)?;
        let pixels = self.vae.config.input;
        let mut host = Vec::new();
        let start = std::time::Instant::now();
        let mut images = 0usize;
        for s in 0..steps {
            epoch.gather(train, s, &mut host);
            let b = host.len() / pixels;
            images += b;
            let x = Tensor::from_slice(&engine, &host, &[b, pixels])?;
            let l = self.train_step(&x)?;
            for (row, v) in [&l.loss, &l.recon_mean, &l.kl_mean].into_iter().enumerate() {
                engine.copy_region(v.value(), 0, &log, row * steps + s, 1)?;
            }
            engine.flush()?;
        }
        let values = log.to_vec::<f32>()?;
        let seconds = start.elapsed().as_secs_f64();
        let first = self.step - steps as u64;
        if let Some(s) = values[..steps].iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "training loss",
                step: first + s as u64,
                value: values[s],
            });
        }
        let mean = |row: usize| {
            values[row * steps..(row + 1) * steps]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / steps as f64
        };
        self.epoch += 1;
        Ok(EpochStats {
            epoch: self.epoch,
            steps,
            loss: mean(0),
            recon: mean(1),
            kl: mean(2),
            images_per_second: images as f64 / seconds,
        })
    }
}

/// The elements of `t` read back and summed in f64.
fn sum_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_vec::<f32>()?.iter().map(|&v| v as f64).sum())
}

fn refs(named: &[(String, Tensor)]) -> Vec<(&str, &Tensor)> {
    named.iter().map(|(n, t)| (n.as_str(), t)).collect()
}

fn parse_list(s: &str) -> Result<Vec<usize>> {
    s.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| Error::bad("resume", format!("bad layer list {s:?}")))
        })
        .collect()
}

/// Test-set figures of a trained model.
#[derive(Clone, Debug)]
pub struct Report {
    /// −ELBO = recon + KL, nats per image, over the whole test set with one ε per image.
    pub neg_elbo: f64,
    pub recon: f64,
    pub kl: f64,
    /// −log p(x) by the IWAE bound with `iwae_k` importance samples on the first `iwae_images`.
    pub iwae_nll: f64,
    pub iwae_k: usize,
    pub iwae_images: usize,
    /// Latent units with Var_x E_q[z_u] > 0.01 (Burda et al. 2016), and each unit's variance.
    pub active_units: usize,
    pub unit_variances: Vec<f64>,
}

/// Seed offset that keeps evaluation noise apart from training noise.
const EVAL_STREAM: u64 = 0x0E7A_1000_0000_0000;

/// Evaluates −ELBO, the IWAE-k NLL and the active units on `test`.
pub fn evaluate(
    vae: &Vae,
    test: &Split,
    seed: u64,
    k: usize,
    iwae_images: usize,
) -> Result<Report> {
    let engine = vae.mu.weight.value().engine().clone();
    let (pixels, d) = (vae.config.input, vae.config.latent);
    let n = test.len();
    let (mut recon, mut kl) = (0.0f64, 0.0f64);
    let mut mus = Vec::with_capacity(n * d);
    let mut offset = 0u64;
    for start in (0..n).step_by(500) {
        let b = 500.min(n - start);
        let x = Tensor::from_slice(
            &engine,
            &test.images()[start * pixels..(start + b) * pixels],
            &[b, pixels],
        )?;
        let tape = Tape::no_grad(&engine);
        let (mu, logvar) = vae.encode(&tape.input(&x))?;
        let eps = random::normal(&engine, &[b, d], seed ^ EVAL_STREAM, offset)?;
        offset += random::blocks(b * d);
        let logits = vae.decode(&mu.reparameterize(&logvar, &eps)?)?;
        recon += sum_f64(logits.bce_with_logits(&x)?.value())?;
        kl += sum_f64(mu.kl_std_normal(&logvar)?.value())?;
        mus.extend(mu.value().to_vec::<f32>()?);
    }
    let (recon, kl) = (recon / n as f64, kl / n as f64);
    let unit_variances: Vec<f64> = (0..d)
        .map(|u| {
            let m = (0..n).map(|i| mus[i * d + u] as f64).sum::<f64>() / n as f64;
            (0..n)
                .map(|i| (mus[i * d + u] as f64 - m).powi(2))
                .sum::<f64>()
                / n as f64
        })
        .collect();
    let active_units = unit_variances.iter().filter(|&&v| v > 0.01).count();
    let iwae_images = iwae_images.min(n);
    let iwae_nll = iwae(
        vae,
        &test.images()[..iwae_images * pixels],
        seed ^ EVAL_STREAM ^ 1,
        k,
    )?;
    Ok(Report {
        neg_elbo: recon + kl,
        recon,
        kl,
        iwae_nll,
        iwae_k: k,
        iwae_images,
        active_units,
        unit_variances,
    })
}

/// Mean over `images` of −log p(x) ≈ −log (1/k) Σ_j p(x|z_j) p(z_j) / q(z_j|x), z_j ~ q(z|x)
/// (Burda et al. 2016), the k weights combined with a stable log-sum-exp on the GPU.
pub fn iwae(vae: &Vae, images: &[f32], seed: u64, k: usize) -> Result<f64> {
    use crate::kernels::{elementwise as ew, elementwise::Binary, kl, layout, losses};
    let engine = vae.mu.weight.value().engine().clone();
    let (pixels, d) = (vae.config.input, vae.config.latent);
    let n = images.len() / pixels;
    if n == 0 || k == 0 {
        return Err(Error::bad(
            "iwae",
            "needs at least one image and one sample",
        ));
    }
    // About 4,096 decoded samples per chunk keeps the buffers small.
    let chunk = (4096 / k).max(1);
    let mut total = 0.0f64;
    let mut offset = 0u64;
    for start in (0..n).step_by(chunk) {
        let c = chunk.min(n - start);
        let x = Tensor::from_slice(
            &engine,
            &images[start * pixels..(start + c) * pixels],
            &[c, pixels],
        )?;
        let tape = Tape::no_grad(&engine);
        let (mu, logvar) = vae.encode(&tape.input(&x))?;
        // Row i·k + j is sample j of image i.
        let rows: Vec<u32> = (0..c * k).map(|r| (r / k) as u32).collect();
        let idx = Tensor::from_slice(&engine, &rows, &[c * k])?;
        let (mur, lvr, xr) = (
            layout::gather(mu.value(), &idx)?,
            layout::gather(logvar.value(), &idx)?,
            layout::gather(&x, &idx)?,
        );
        let eps = random::normal(&engine, &[c * k, d], seed, offset)?;
        offset += random::blocks(c * k * d);
        let z = kl::reparameterize(&mur, &lvr, &eps)?;
        let logits = vae.decode(&tape.input(&z))?;
        let bce = losses::bce_with_logits(logits.value(), &xr)?;
        let zeros = Tensor::zeros(&engine, &[c * k, d], DType::F32)?;
        let nll_prior = losses::gaussian_nll(&z, &zeros, &zeros)?;
        let nll_q = losses::gaussian_nll(&z, &mur, &lvr)?;
        // log w = log p(x|z) + log p(z) − log q(z|x) = nll_q − bce − nll_prior.
        let logw = ew::binary(
            Binary::Sub,
            &ew::binary(Binary::Sub, &nll_q, &bce)?,
            &nll_prior,
        )?;
        let nll = crate::dist::iwae_nll(&logw.reshape(&[c, k])?)?;
        total += sum_f64(&nll)?;
    }
    Ok(total / n as f64)
}

/// Writes reconstructions, prior samples and, for a 2-D latent space, the latent manifold and
/// the scatter of test means coloured by class, as PNGs in `out`.
pub fn draw(vae: &Vae, test: &Split, out: &Path, seed: u64) -> Result<()> {
    use crate::kernels::elementwise::{self as ew, Unary};
    let engine = vae.mu.weight.value().engine().clone();
    let (pixels, d) = (vae.config.input, vae.config.latent);
    let side = (pixels as f64).sqrt() as usize;
    let mean_image = |z: &Tensor| -> Result<Vec<f32>> {
        let tape = Tape::no_grad(&engine);
        ew::unary(Unary::Sigmoid, vae.decode(&tape.input(z))?.value())?.to_vec::<f32>()
    };
    // Reconstructions: rows of 8 test images, each followed by its reconstruction at z = μ.
    let x = Tensor::from_slice(&engine, &test.images()[..32 * pixels], &[32, pixels])?;
    let tape = Tape::no_grad(&engine);
    let (mu, _) = vae.encode(&tape.input(&x))?;
    let rec = mean_image(mu.value())?;
    let mut grid = Vec::with_capacity(64 * pixels);
    for r in 0..4 {
        grid.extend_from_slice(&test.images()[r * 8 * pixels..(r + 1) * 8 * pixels]);
        grid.extend_from_slice(&rec[r * 8 * pixels..(r + 1) * 8 * pixels]);
    }
    io::save_grid(out.join("reconstructions.png"), &grid, 8, side, side, 2)?;
    // Samples from the prior.
    let z = random::normal(&engine, &[64, d], seed ^ EVAL_STREAM ^ 2, 0)?;
    io::save_grid(out.join("samples.png"), &mean_image(&z)?, 8, side, side, 2)?;
    if d == 2 {
        // The manifold: decoded means over a 20×20 grid of normal quantiles.
        let q: Vec<f32> = (0..20)
            .map(|i| normal_quantile(0.05 + 0.9 * i as f64 / 19.0) as f32)
            .collect();
        let zs: Vec<f32> = (0..400).flat_map(|i| [q[i % 20], q[19 - i / 20]]).collect();
        let z = Tensor::from_slice(&engine, &zs, &[400, 2])?;
        io::save_grid(
            out.join("manifold.png"),
            &mean_image(&z)?,
            20,
            side,
            side,
            1,
        )?;
        let mut points = Vec::with_capacity(test.len());
        for start in (0..test.len()).step_by(1000) {
            let b = 1000.min(test.len() - start);
            let x = Tensor::from_slice(
                &engine,
                &test.images()[start * pixels..(start + b) * pixels],
                &[b, pixels],
            )?;
            let tape = Tape::no_grad(&engine);
            let mu = vae.encode(&tape.input(&x))?.0.value().to_vec::<f32>()?;
            points.extend(mu.chunks(2).map(|p| (p[0], p[1])));
        }
        io::scatter_png(out.join("latent_scatter.png"), &points, test.labels(), 800)?;
    }
    Ok(())
}

/// Φ⁻¹(p) by Acklam's rational approximation (relative error < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

impl Report {
    /// metrics.json: the figures with the settings that produced them.
    pub fn to_json(&self, s: &TrainSettings, epochs: u64, steps: u64) -> String {
        let vars: Vec<String> = self
            .unit_variances
            .iter()
            .map(|v| format!("{v:.6}"))
            .collect();
        format!(
            "{{\n  \"model\": \"mlp-vae\",\n  \"epochs\": {epochs},\n  \"steps\": {steps},\n  \"batch\": {},\n  \"lr\": {},\n  \"beta\": {},\n  \"warmup\": {},\n  \"seed\": {},\n  \"objective\": \"{:?}\",\n  \"test_neg_elbo\": {:.4},\n  \"test_recon\": {:.4},\n  \"test_kl\": {:.4},\n  \"iwae_k\": {},\n  \"iwae_images\": {},\n  \"iwae_nll\": {:.4},\n  \"active_units\": {},\n  \"unit_variances\": [{}]\n}}\n",
            s.batch,
            s.lr,
            s.beta,
            s.warmup,
            s.seed,
            s.objective,
            self.neg_elbo,
            self.recon,
            self.kl,
            self.iwae_k,
            self.iwae_images,
            self.iwae_nll,
            self.active_units,
            vars.join(", ")
        )
    }
}
