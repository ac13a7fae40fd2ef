//! Training the VAE: its settings and its objective for the one [`crate::optim::Trainer`]
//! (noise from Philox stream `seed` at a step-determined offset, β warm-up by step), so that
//! `--resume` is bit-exact. Tests: `tests/vae.rs`.

use super::{Autoencoder, Objective};
use crate::engine::{Engine, Result};
use crate::kernels::random;
use crate::nn::Module;
use crate::optim::{Batch, KlSchedule, StepInfo, Terms, TrainConfig, Trainable, Trainer};
use crate::tape::Tape;
use std::path::{Path, PathBuf};

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

impl TrainSettings {
    /// The trainer's configuration: Adam at `lr`, every batch kept, `data` the training
    /// data's identity, a checkpoint after every epoch if `checkpoint` is given.
    pub fn config(&self, data: impl Into<String>, checkpoint: Option<PathBuf>) -> TrainConfig {
        TrainConfig {
            binarize: self.binarize,
            checkpoint,
            name: "vae".into(),
            ..TrainConfig::adam(self.batch, self.lr, self.seed, data)
        }
    }
}

/// A VAE with its objective: the negative ELBO (or one of its halves) with β warm-up.
pub struct Elbo {
    pub vae: Box<dyn Autoencoder>,
    pub objective: Objective,
    pub schedule: KlSchedule,
}

impl Elbo {
    pub fn new(vae: Box<dyn Autoencoder>, settings: &TrainSettings) -> Elbo {
        Elbo {
            vae,
            objective: settings.objective,
            schedule: KlSchedule {
                beta: settings.beta,
                warmup: settings.warmup,
            },
        }
    }
}

impl Module for Elbo {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&*self.vae as &dyn Module]
    }
}

impl Trainable for Elbo {
    fn engine(&self) -> &Engine {
        self.vae.engine()
    }

    fn describe(&self) -> Vec<(String, String)> {
        let mut d = self.vae.describe();
        d.push(("objective".into(), format!("{:?}", self.objective)));
        d.push(("beta".into(), self.schedule.beta.to_string()));
        d.push(("warmup".into(), self.schedule.warmup.to_string()));
        d
    }

    /// `loss` (recon + β·KL, or the chosen half), `recon` and `kl`, batch means in nats. The
    /// noise of step s is Philox stream `seed` from block s·blocks(B·latent), B the configured
    /// batch, whatever the size of this batch.
    fn losses(&self, tape: &Tape, batch: &Batch, at: &StepInfo) -> Result<Terms> {
        let x = &batch.x;
        let c = self.vae.condition(&batch.labels)?;
        let blocks = random::blocks(at.batch * self.vae.dims().latent);
        let eps = self.vae.noise(x.shape()[0], at.seed, at.step * blocks)?;
        let beta = self.schedule.weight(at.step);
        let l = self
            .vae
            .losses(tape, x, c.as_ref(), &eps, beta, self.objective)?;
        Ok(vec![
            ("loss", l.loss),
            ("recon", l.recon_mean),
            ("kl", l.kl_mean),
        ])
    }
}

/// A fresh run of `model` with `settings` on `examples` training images.
pub fn trainer(
    model: Box<dyn Autoencoder>,
    settings: &TrainSettings,
    config: TrainConfig,
    examples: usize,
) -> Result<Trainer<Elbo>> {
    Trainer::new(Elbo::new(model, settings), config, examples)
}

/// Continues the run saved in `path` (the settings, model and data must match it).
pub fn resume(
    model: Box<dyn Autoencoder>,
    settings: &TrainSettings,
    config: TrainConfig,
    examples: usize,
    path: &Path,
) -> Result<Trainer<Elbo>> {
    Trainer::resume(Elbo::new(model, settings), config, examples, path)
}
