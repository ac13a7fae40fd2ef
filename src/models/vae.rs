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
        let loss = match objective {
            Objective::Elbo => recon.mean()?.add(&kl.mean()?.affine(beta, 0.0)?)?,
            Objective::ReconOnly => recon.mean()?,
            Objective::KlOnly => kl.mean()?,
        };
        Ok(Losses { loss, recon, kl })
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
