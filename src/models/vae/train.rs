//! Training the VAE: settings, the per-step recording (one submission, no readback), epochs with
//! a GPU-side loss log, and checkpoints that make `--resume` bit-exact. Tests: `tests/vae.rs`.

use super::{Autoencoder, Losses, Objective};
use crate::data::{Batches, Split};
use crate::engine::{Error, Result, Tensor};
use crate::io::{self, Meta};
use crate::kernels::adam::AdamConfig;
use crate::kernels::random;
use crate::optim::{Adam, KlSchedule, StepLog};
use crate::tape::Tape;
use std::path::Path;

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
    pub model: Box<dyn Autoencoder>,
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
    /// A fresh run of `model` (initialised by its maker), Adam with PyTorch's defaults and `lr`.
    pub fn new(
        model: Box<dyn Autoencoder>,
        settings: &TrainSettings,
        train_len: usize,
    ) -> Result<Trainer> {
        let adam = Adam::new(
            model.params(),
            AdamConfig {
                lr: settings.lr,
                ..Default::default()
            },
        )?;
        Ok(Trainer {
            model,
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

    /// Continues the run saved in `path` with `model` (built with the same settings as the
    /// saved one); the model description and training settings must match the checkpoint.
    pub fn resume(
        model: Box<dyn Autoencoder>,
        path: &Path,
        settings: &TrainSettings,
        train_len: usize,
    ) -> Result<Trainer> {
        let ck = io::load(path)?;
        let mut t = Trainer::new(model, settings, train_len)?;
        for (key, want) in &t.meta() {
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

    /// Saves parameters, running statistics, Adam moments and counters atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let named = self.named();
        let meta: Meta = self.meta().into_iter().collect();
        io::save(path, &refs(&named), &meta)
    }

    fn named(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .model
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.value().clone()))
            .collect();
        v.extend(self.model.buffers());
        v.extend(self.adam.state());
        v
    }

    fn meta(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        let mut m = self.model.describe();
        m.extend(
            [
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
            .map(|(k, v)| (k.to_string(), v)),
        );
        m
    }

    /// Records one training step on batch `x` [B, input] (with one-hot labels `c` for a CVAE):
    /// noise, forward, backward and Adam go into the pending encoder; nothing is submitted or
    /// read back.
    pub fn train_step(&mut self, x: &Tensor, c: Option<&Tensor>) -> Result<Losses> {
        let engine = x.engine();
        let b = x.shape()[0];
        let noise_blocks = random::blocks(self.settings.batch * self.model.dims().latent);
        let eps = self
            .model
            .noise(b, self.settings.seed, self.step * noise_blocks)?;
        self.model.set_training(true);
        let tape = Tape::new(engine);
        let beta = self.schedule.weight(self.step);
        let l = self
            .model
            .losses(&tape, x, c, &eps, beta, self.settings.objective)?;
        tape.backward(&l.loss)?;
        self.adam.step()?;
        self.step += 1;
        Ok(l)
    }

    /// One epoch over `train` in the epoch's seeded order. Each step is recorded and submitted
    /// as one command buffer with no readback; the step losses are copied into a GPU log read
    /// once at the end, where a non-finite loss stops training with the step named.
    pub fn train_epoch(&mut self, train: &Split) -> Result<EpochStats> {
        let engine = self.model.engine().clone();
        let epoch = self.batches.epoch(self.epoch);
        let steps = epoch.len();
        let log = StepLog::new(&engine, 3, steps)?;
        let pixels = self.model.dims().input;
        let mut host = Vec::new();
        let start = std::time::Instant::now();
        let mut images = 0usize;
        for s in 0..steps {
            let indices = epoch.gather(train, s, &mut host);
            let labels: Vec<u8> = indices.iter().map(|&i| train.labels()[i]).collect();
            let c = self.model.condition(&labels)?;
            let b = host.len() / pixels;
            images += b;
            let x = Tensor::from_slice(&engine, &host, &[b, pixels])?;
            let l = self.train_step(&x, c.as_ref())?;
            for (row, v) in [&l.loss, &l.recon_mean, &l.kl_mean].into_iter().enumerate() {
                log.record(row, s, v.value())?;
            }
            engine.flush()?;
        }
        let means = log.means("training loss", self.step - steps as u64)?;
        let seconds = start.elapsed().as_secs_f64();
        self.epoch += 1;
        Ok(EpochStats {
            epoch: self.epoch,
            steps,
            loss: means[0],
            recon: means[1],
            kl: means[2],
            images_per_second: images as f64 / seconds,
        })
    }
}

/// The elements of `t` read back and summed in f64.
pub(super) fn sum_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_vec::<f32>()?.iter().map(|&v| v as f64).sum())
}

fn refs(named: &[(String, Tensor)]) -> Vec<(&str, &Tensor)> {
    named.iter().map(|(n, t)| (n.as_str(), t)).collect()
}
