//! Forecasting from a static image (Walker et al. 2016, "An Uncertain Future"): a conditional
//! VAE over dense trajectories — the encoder sees the image and the true future motion, the
//! decoder the image and z; at test time z ~ N(0, I) gives several futures of one still image.
//! Beside it, in the same run, a deterministic regression. Tests: `tests/forecast.rs`.

use crate::data::Epoch;
use crate::data::motion::{SIDE, Scene, TRAJECTORY};
use crate::engine::{Engine, Error, Result, Tensor};
use crate::kernels::random;
use crate::nn::{Mlp, Module, layer_seed};
use crate::optim::{Batch, Examples, Group, StepInfo, Terms, Trainable};
use crate::tape::{Tape, Var};

/// Image values per scene.
pub const PIXELS: usize = SIDE * SIDE;

/// Architecture and objective.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForecastConfig {
    pub latent: usize,
    pub hidden: usize,
    /// Standard deviation s of the Gaussian decoder (cells): the reconstruction term is
    /// ‖Δ‖²/(2s²).
    pub noise: f32,
    /// KL weight.
    pub beta: f32,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            latent: 4,
            hidden: 256,
            noise: 0.25,
            beta: 1.0,
        }
    }
}

/// The trajectory CVAE and the regression, one optimizer group each (in that order).
pub struct Forecast {
    pub config: ForecastConfig,
    pub encoder: Mlp,
    pub decoder: Mlp,
    pub regression: Mlp,
    engine: Engine,
}

/// Names of the optimizer groups, in phase order.
pub const GROUPS: [&str; 2] = ["cvae", "regression"];

impl Forecast {
    pub fn new(engine: &Engine, config: ForecastConfig, seed: u64) -> Result<Forecast> {
        let (d, h) = (config.latent, config.hidden);
        Ok(Forecast {
            encoder: Mlp::new(
                engine,
                "encoder",
                &[PIXELS + TRAJECTORY, h, 2 * d],
                layer_seed(seed, 1),
            )?,
            decoder: Mlp::new(
                engine,
                "decoder",
                &[d + PIXELS, h, h, TRAJECTORY],
                layer_seed(seed, 2),
            )?,
            regression: Mlp::new(
                engine,
                "regression",
                &[PIXELS, h, h, TRAJECTORY],
                layer_seed(seed, 3),
            )?,
            engine: engine.clone(),
            config,
        })
    }

    /// Trajectories `[B, TRAJECTORY]` from codes `z` `[B, latent]` and images `[B, PIXELS]`.
    pub fn decode(&self, z: &Var, image: &Var) -> Result<Var> {
        self.decoder.forward(&Var::concat(&[z, image], 1)?)
    }

    /// ‖pred − truth‖²/(2s²) summed over the batch, `[1]`.
    fn reconstruction(&self, pred: &Var, truth: &Var) -> Result<Var> {
        let e = pred.sub(truth)?;
        let s = self.config.noise;
        e.mul(&e)?.sum()?.affine(1.0 / (2.0 * s * s), 0.0)
    }

    /// `k` futures of each image of `images` (`[n, PIXELS]` host values), z ~ N(0, I) from
    /// `seed` (or the regression's one future, k times): `[n, k, TRAJECTORY]`.
    pub fn sample(
        &self,
        images: &[f32],
        k: usize,
        regression: bool,
        seed: u64,
    ) -> Result<Vec<f32>> {
        let n = images.len() / PIXELS;
        let tape = Tape::no_grad(&self.engine);
        let rep: Vec<f32> = images
            .chunks_exact(PIXELS)
            .flat_map(|i| i.repeat(k))
            .collect();
        let x = tape.input(&Tensor::from_slice(&self.engine, &rep, &[n * k, PIXELS])?);
        let y = match regression {
            true => self.regression.forward(&x)?,
            false => {
                let eps = random::normal(&self.engine, &[n * k, self.config.latent], seed, 0)?;
                self.decode(&tape.input(&eps), &x)?
            }
        };
        y.value().to_vec()
    }
}

impl Module for Forecast {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.encoder, &self.decoder, &self.regression]
    }
}

impl Trainable for Forecast {
    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn describe(&self) -> Vec<(String, String)> {
        let c = &self.config;
        vec![
            ("model".into(), "forecast".into()),
            ("latent".into(), c.latent.to_string()),
            ("hidden".into(), c.hidden.to_string()),
            ("noise".into(), c.noise.to_string()),
            ("beta".into(), c.beta.to_string()),
        ]
    }

    fn groups(&self) -> Vec<Group> {
        let mut cvae = self.encoder.params();
        cvae.extend(self.decoder.params());
        vec![
            Group {
                name: GROUPS[0],
                params: cvae,
            },
            Group {
                name: GROUPS[1],
                params: self.regression.params(),
            },
        ]
    }

    fn losses(&self, tape: &Tape, batch: &Batch, at: &StepInfo) -> Result<Terms> {
        let x = tape.input(&batch.x);
        let b = x.shape()[0];
        let image = x.slice(1, 0..PIXELS)?;
        let truth = x.slice(1, PIXELS..PIXELS + TRAJECTORY)?;
        let inv_b = 1.0 / b as f32;
        match at.phase {
            0 => {
                let d = self.config.latent;
                let h = self.encoder.forward(&x)?;
                let (mu, logvar) = (h.slice(1, 0..d)?, h.slice(1, d..2 * d)?);
                let offset = at.step * random::blocks(at.batch * d);
                let eps = random::normal(&self.engine, &[b, d], at.seed ^ 0xF0, offset)?;
                let z = mu.reparameterize(&logvar, &eps)?;
                let kl = mu.kl_std_normal(&logvar)?.sum()?;
                let rec = self.reconstruction(&self.decode(&z, &image)?, &truth)?;
                let loss = rec
                    .add(&kl.affine(self.config.beta, 0.0)?)?
                    .affine(inv_b, 0.0)?;
                Ok(vec![
                    ("loss", loss),
                    ("recon", rec.affine(inv_b, 0.0)?),
                    ("kl", kl.affine(inv_b, 0.0)?),
                ])
            }
            1 => {
                let rec = self.reconstruction(&self.regression.forward(&image)?, &truth)?;
                Ok(vec![("loss", rec.affine(inv_b, 0.0)?)])
            }
            p => Err(Error::bad("Forecast::losses", format!("no phase {p}"))),
        }
    }
}

/// Scenes batched for the trainer as rows `[image | trajectory]` (`[B, PIXELS + TRAJECTORY]`),
/// images and trajectories made once.
pub struct SceneExamples {
    pub scenes: Vec<Scene>,
    rows: Vec<f32>,
}

impl SceneExamples {
    pub fn new(scenes: Vec<Scene>) -> SceneExamples {
        let rows = scenes
            .iter()
            .flat_map(|s| {
                let mut r = s.image();
                r.extend(s.trajectory());
                r
            })
            .collect();
        SceneExamples { scenes, rows }
    }
}

impl Examples for SceneExamples {
    fn count(&self) -> usize {
        self.scenes.len()
    }

    fn batch(&self, engine: &Engine, epoch: &Epoch, step: usize) -> Result<Batch> {
        let indices = epoch.batch(step).to_vec();
        let w = PIXELS + TRAJECTORY;
        let host: Vec<f32> = indices
            .iter()
            .flat_map(|&i| self.rows[i * w..(i + 1) * w].iter().copied())
            .collect();
        let x = Tensor::from_slice(engine, &host, &[indices.len(), w])?;
        let labels = indices
            .iter()
            .map(|&i| self.scenes[i].items[0].class)
            .collect();
        Ok(Batch { x, labels, indices })
    }
}
