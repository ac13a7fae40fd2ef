//! The MLP VAE of Kingma & Welling (2014) in the W1 shape of BENCH.md: encoder 784-512-256 with
//! a 256→(μ, log σ²) head, Bernoulli decoder 32-256-512-784. Trained by `examples/vae.rs`.

use crate::engine::{DType, Engine, Result, Tensor};
use crate::kernels::random;
use crate::nn::{Linear, Module};
use crate::tape::{Param, Tape, Var};

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
        decoder.push(layer(format!("decoder.{}", config.hidden.len()), width, config.input)?);
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
    pub fn losses(&self, tape: &Tape, x: &Tensor, eps: &Tensor, beta: f32, objective: Objective) -> Result<Losses> {
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
        for l in self.encoder.iter().chain([&self.mu, &self.logvar]).chain(&self.decoder) {
            p.extend(l.params());
        }
        p
    }
}

/// Statistics of one epoch, read back once at its end.
#[derive(Clone, Debug)]
pub struct EpochStats {
    pub epoch: u64,
    pub steps: usize,
    /// Mean over the epoch's steps of the training loss, reconstruction and KL (nats/image).
    pub loss: f64,
    pub recon: f64,
    pub kl: f64,
    pub images_per_second: f64,
}

/// Training state: model, optimizer, schedule and the counters that make a run replayable.
pub struct Trainer {
    pub vae: Vae,
    pub adam: crate::optim::Adam,
    pub schedule: crate::optim::KlSchedule,
    pub objective: Objective,
    pub batches: crate::data::Batches,
    /// Seed of the noise stream (ε of step s starts at Philox block s·blocks(B·latent)).
    pub seed: u64,
    /// Steps taken over all epochs.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
}

impl Trainer {
    /// One epoch over `train` in the epoch's seeded order. Each step is recorded and submitted
    /// as one command buffer with no readback; the per-step losses are copied into a GPU log
    /// that is read once at the end, where a non-finite loss stops training with the step named.
    pub fn train_epoch(&mut self, train: &crate::data::Split) -> Result<EpochStats> {
        let engine = self.vae.mu.weight.value().engine().clone();
        let epoch = self.batches.epoch(self.epoch);
        let steps = epoch.len();
        let log = Tensor::zeros(&engine, &[3, steps], DType::F32)?;
        let pixels = self.vae.config.input;
        let noise_blocks = random::blocks(self.batches.batch_size() * self.vae.config.latent);
        let mut host = Vec::new();
        let start = std::time::Instant::now();
        let mut images = 0usize;
        for s in 0..steps {
            epoch.gather(train, s, &mut host);
            let b = host.len() / pixels;
            images += b;
            let x = Tensor::from_slice(&engine, &host, &[b, pixels])?;
            let eps = self.vae.noise(&engine, b, self.seed, self.step * noise_blocks)?;
            let tape = Tape::new(&engine);
            let beta = self.schedule.weight(self.step);
            let l = self.vae.losses(&tape, &x, &eps, beta, self.objective)?;
            tape.backward(&l.loss)?;
            self.adam.step()?;
            for (row, v) in [&l.loss, &l.recon_mean, &l.kl_mean].into_iter().enumerate() {
                engine.copy_region(v.value(), 0, &log, row * steps + s, 1)?;
            }
            engine.flush()?;
            self.step += 1;
        }
        let values = log.to_vec::<f32>()?;
        let seconds = start.elapsed().as_secs_f64();
        let first_step = self.step - steps as u64;
        if let Some(s) = values[..steps].iter().position(|v| !v.is_finite()) {
            return Err(crate::Error::NonFinite {
                what: "training loss",
                step: first_step + s as u64,
                value: values[s],
            });
        }
        let mean = |row: usize| values[row * steps..(row + 1) * steps].iter().map(|&v| v as f64).sum::<f64>() / steps as f64;
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
