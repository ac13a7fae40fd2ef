//! `VectorQuantizer`: a codebook trained by gradient or EMA, code usage tracked on the GPU and
//! dead codes re-initialised from encoder outputs, with no readback inside a step. Kernels:
//! `kernels::vq`; tests: `kernels-tests/vq.rs`.

use super::Module;
use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::kernels::random;
use crate::kernels::vq::{self, EmaState, Rows};
use crate::tape::{Param, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::Cell;

/// EMA codebook updates (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019).
#[derive(Clone, Copy, Debug)]
pub struct Ema {
    /// γ of N ← γN + (1 − γ)n and m ← γm + (1 − γ)Σz.
    pub decay: f32,
    /// Laplace smoothing ε of the cluster sizes.
    pub eps: f32,
}

impl Default for Ema {
    fn default() -> Ema {
        Ema {
            decay: 0.99,
            eps: 1e-5,
        }
    }
}

/// Settings of a [`VectorQuantizer`].
#[derive(Clone, Copy, Debug)]
pub struct VqConfig {
    /// Codes K.
    pub codes: usize,
    /// Dimensions D of a code (the encoder's output channels).
    pub dim: usize,
    /// Weight β of the commitment loss.
    pub beta: f32,
    /// `None`: the codebook is a parameter trained by the codebook loss; `Some`: EMA updates.
    pub ema: Option<Ema>,
    /// Dead-code reset: a code unused for this many training steps becomes a random row of the
    /// current batch's encoder outputs; `None` turns it off. With resets on, the first training
    /// step also re-initialises every code its batch leaves unused (data-dependent init).
    pub reset_after: Option<u32>,
    /// Seeds the codebook's init and the choice of rows for resets.
    pub seed: u64,
}

impl Default for VqConfig {
    fn default() -> VqConfig {
        VqConfig {
            codes: 512,
            dim: 64,
            beta: 0.25,
            ema: None,
            reset_after: Some(100),
            seed: 0,
        }
    }
}

/// What [`VectorQuantizer::forward`] returns.
pub struct VqOutput {
    /// Quantised input, shaped like it (straight-through gradient to the input).
    pub z_q: Var,
    /// Code of each vector: u32 `[N]` for `[N, D]` input, `[B, H, W]` for `[B, D, H, W]`.
    pub indices: Tensor,
    /// The term to add to the model's loss: codebook + commitment loss (commitment only with EMA).
    pub loss: Var,
    pub codebook_loss: Var,
    pub commitment_loss: Var,
}

/// Codebook health over the counted steps (an epoch, say).
#[derive(Clone, Debug)]
pub struct CodebookStats {
    /// Fraction of codes used at least once.
    pub usage: f64,
    /// exp of the entropy of the code distribution (K when uniform, 1 when one code).
    pub perplexity: f64,
    /// Codes never used.
    pub unused: usize,
    /// Uses per code.
    pub counts: Vec<u32>,
}

/// Fraction of codes with a count above zero.
pub fn usage(counts: &[u32]) -> f64 {
    counts.iter().filter(|&&c| c > 0).count() as f64 / counts.len().max(1) as f64
}

/// exp(H) of the distribution the counts describe (1 for no counts).
pub fn perplexity(counts: &[u32]) -> f64 {
    let total: f64 = counts.iter().map(|&c| c as f64).sum();
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.ln()
        })
        .sum();
    h.exp()
}

/// A vector-quantisation layer (van den Oord et al. 2017): nearest code, straight-through z_q,
/// codebook and commitment losses; in training, EMA updates, usage counts and dead-code resets.
pub struct VectorQuantizer {
    pub codebook: Param,
    pub config: VqConfig,
    name: String,
    /// EMA cluster sizes [K] and sums [K, D].
    ema: Option<(Tensor, Tensor)>,
    /// Uses per code since [`VectorQuantizer::start_epoch`], u32 [K].
    epoch_counts: Tensor,
    /// Training steps since each code was last used, u32 [K].
    idle: Tensor,
    /// One step's counts (gradient mode), u32 [K].
    step_counts: Tensor,
    /// Uniforms picking the batch rows offered to resets, f32 [K], and the Philox offset of the
    /// next draw (seeded by the config: a run replays).
    reset_draws: Tensor,
    draws: Cell<u64>,
    training: Cell<bool>,
}

impl VectorQuantizer {
    /// Codes drawn from U(−1/K, 1/K) (the reference implementations' init); EMA sums start as the
    /// codebook and sizes at zero.
    pub fn new(engine: &Engine, name: &str, config: VqConfig) -> Result<VectorQuantizer> {
        let (k, d) = (config.codes, config.dim);
        if k == 0 || d == 0 || config.reset_after == Some(0) {
            return Err(Error::bad(
                "VectorQuantizer",
                format!("bad config {config:?}"),
            ));
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let bound = 1.0 / k as f32;
        let init: Vec<f32> = (0..k * d)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let codebook = Tensor::from_slice(engine, &init, &[k, d])?;
        let ema = match config.ema {
            Some(_) => Some((
                Tensor::zeros(engine, &[k], DType::F32)?,
                Tensor::from_slice(engine, &init, &[k, d])?,
            )),
            None => None,
        };
        let counter = || Tensor::zeros(engine, &[k], DType::U32);
        Ok(VectorQuantizer {
            codebook: Param::new(format!("{name}.codebook"), codebook)?,
            config,
            name: name.to_string(),
            ema,
            epoch_counts: counter()?,
            // Counting every code as idle for `reset_after` steps already makes the first
            // training step re-initialise the codes its batch leaves unused from that batch's
            // encoder outputs: a data-dependent init (the U(±1/K) codes sit far from z_e, and
            // left alone one code takes every vector until the first reset).
            idle: match config.reset_after {
                Some(after) => Tensor::from_slice(engine, &vec![after; k], &[k])?,
                None => counter()?,
            },
            step_counts: counter()?,
            reset_draws: Tensor::zeros(engine, &[k], DType::F32)?,
            draws: Cell::new(0),
            training: Cell::new(true),
        })
    }

    pub fn is_training(&self) -> bool {
        self.training.get()
    }

    /// Quantises `x`: [N, D] rows, or [B, D, H, W] feature maps (each pixel's D channels).
    pub fn forward(&self, x: &Var) -> Result<VqOutput> {
        let shape = x.shape().to_vec();
        let d = self.config.dim;
        let rows = match shape[..] {
            [_, dd] if dd == d => x.clone(),
            [b, dd, h, w] if dd == d => x
                .reshape(&[b, d, h * w])?
                .transpose()?
                .reshape(&[b * h * w, d])?,
            _ => {
                return Err(Error::ShapeMismatch {
                    op: "VectorQuantizer::forward",
                    lhs: shape,
                    rhs: vec![0, d],
                });
            }
        };
        let tape = x.tape();
        let codebook = match self.config.ema {
            Some(_) => tape.input(self.codebook.value()),
            None => tape.param(&self.codebook),
        };
        let q = rows.vector_quantize(&codebook, self.config.beta)?;
        let loss = match self.config.ema {
            Some(_) => q.commitment_loss.clone(),
            None => q.loss()?,
        };
        if self.training.get() {
            self.step(rows.value(), &q.indices)?;
        }
        let (z_q, indices) = match shape[..] {
            [b, _, h, w] => (
                q.z_q
                    .reshape(&[b, h * w, d])?
                    .transpose()?
                    .reshape(&shape)?,
                q.indices.reshape(&[b, h, w])?,
            ),
            _ => (q.z_q, q.indices),
        };
        Ok(VqOutput {
            z_q,
            indices,
            loss,
            codebook_loss: q.codebook_loss,
            commitment_loss: q.commitment_loss,
        })
    }

    /// A training step's bookkeeping, all recorded on the GPU: EMA update, usage counts, resets.
    /// Resets change only codes unused in this batch, whose codebook gradient is zero, so the
    /// backward that follows is unaffected.
    fn step(&self, z: &Tensor, indices: &Tensor) -> Result<()> {
        #[cfg(feature = "mpi")]
        if crate::ranks::collecting() {
            return self.shared_step(z, indices);
        }
        let k = self.config.codes;
        let e = self.codebook.value();
        let ema = self
            .ema
            .as_ref()
            .map(|(sizes, sums)| EmaState { sizes, sums });
        let counts = match (&ema, self.config.ema) {
            (Some(state), Some(cfg)) => {
                let clusters = vq::cluster_sums(z, indices, k)?;
                vq::ema_update(e, state, &clusters, cfg.decay, cfg.eps)?;
                clusters.counts
            }
            _ => {
                e.engine().clear(&self.step_counts)?;
                vq::histogram_into(indices, &self.step_counts)?;
                self.step_counts.clone()
            }
        };
        vq::track_usage(&counts, &self.epoch_counts, &self.idle)?;
        if let Some(after) = self.config.reset_after {
            let offset = self.draws.get();
            random::uniform_into(&self.reset_draws, self.config.seed, offset)?;
            self.draws.set(offset + random::blocks(k));
            let rows = Rows::Uniform(&self.reset_draws);
            vq::reset_dead(e, &self.idle, after, z, rows, ema.as_ref())?;
        }
        Ok(())
    }

    /// [`VectorQuantizer::step`] in a data-parallel run: this rank's counts (and EMA sums) and
    /// a candidate row of its batch for every code go to the trainer, which sums the counts and
    /// sums over the ranks and gives every rank rank 0's candidates with the gradients; then
    /// every rank applies the same EMA update, usage counts and resets (decided on the global
    /// counts, with the same rows), so the codebooks stay bit-identical.
    #[cfg(feature = "mpi")]
    fn shared_step(&self, z: &Tensor, indices: &Tensor) -> Result<()> {
        let (k, d) = (self.config.codes, self.config.dim);
        let engine = z.engine().clone();
        let (counts, sums) = match self.config.ema {
            Some(_) => {
                let c = vq::cluster_sums(z, indices, k)?;
                (c.counts, Some(c.sums))
            }
            None => {
                let counts = Tensor::zeros(&engine, &[k], DType::U32)?;
                vq::histogram_into(indices, &counts)?;
                (counts, None)
            }
        };
        // Candidates: code k's row ⌊u_k·N⌋ of this batch, by a reset of every code of a scratch
        // codebook (the same draws as a single process's resets).
        let candidates = match self.config.reset_after {
            Some(_) => {
                let offset = self.draws.get();
                random::uniform_into(&self.reset_draws, self.config.seed, offset)?;
                self.draws.set(offset + random::blocks(k));
                let rows = Tensor::uninit(&engine, &[k, d], DType::F32)?;
                let all_idle = Tensor::from_slice(&engine, &vec![1u32; k], &[k])?;
                let draws = Rows::Uniform(&self.reset_draws);
                vq::reset_dead(&rows, &all_idle, 1, z, draws, None)?;
                Some(rows)
            }
            None => None,
        };
        let (codebook, ema, config) =
            (self.codebook.value().clone(), self.ema.clone(), self.config);
        let (epoch_counts, idle) = (self.epoch_counts.clone(), self.idle.clone());
        let shared = crate::ranks::Shared {
            sums: sums.iter().cloned().collect(),
            counts: vec![counts.clone()],
            from_root: candidates.iter().cloned().collect(),
            apply: Box::new(move || {
                let state = ema.as_ref().map(|(sizes, sums)| EmaState { sizes, sums });
                if let (Some(state), Some(cfg), Some(sums)) = (&state, config.ema, sums) {
                    let clusters = vq::Clusters {
                        counts: counts.clone(),
                        sums,
                    };
                    vq::ema_update(&codebook, state, &clusters, cfg.decay, cfg.eps)?;
                }
                vq::track_usage(&counts, &epoch_counts, &idle)?;
                if let (Some(after), Some(rows)) = (config.reset_after, candidates) {
                    let own: Vec<u32> = (0..k as u32).collect();
                    let own = Tensor::from_slice(&engine, &own, &[k])?;
                    let rows_of = Rows::Given(&own);
                    vq::reset_dead(&codebook, &idle, after, &rows, rows_of, state.as_ref())?;
                }
                Ok(())
            }),
        };
        match crate::ranks::share(shared) {
            Some(alone) => (alone.apply)(),
            None => Ok(()),
        }
    }

    /// Starts counting code usage afresh.
    pub fn start_epoch(&self) -> Result<()> {
        self.epoch_counts.engine().clear(&self.epoch_counts)
    }

    /// Usage, perplexity and unused codes since [`VectorQuantizer::start_epoch`] (a readback).
    pub fn epoch_stats(&self) -> Result<CodebookStats> {
        let counts: Vec<u32> = self.epoch_counts.to_vec()?;
        Ok(CodebookStats {
            usage: usage(&counts),
            perplexity: perplexity(&counts),
            unused: counts.iter().filter(|&&c| c == 0).count(),
            counts,
        })
    }
}

impl Module for VectorQuantizer {
    /// The codebook when gradients train it; nothing with EMA (an optimizer must not touch it).
    fn params(&self) -> Vec<Param> {
        match self.config.ema {
            Some(_) => Vec::new(),
            None => vec![self.codebook.clone()],
        }
    }

    /// The steps since each code was used, and with EMA the codebook and the EMA statistics.
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(format!("{}.steps_unused", self.name), self.idle.clone())];
        if let Some((sizes, sums)) = &self.ema {
            out.push((
                self.codebook.name().to_string(),
                self.codebook.value().clone(),
            ));
            out.push((format!("{}.ema_cluster_size", self.name), sizes.clone()));
            out.push((format!("{}.ema_embed_sum", self.name), sums.clone()));
        }
        out
    }

    /// The Philox offset of the next reset draw.
    fn counters(&self) -> Vec<(String, &Cell<u64>)> {
        vec![(format!("{}.draws", self.name), &self.draws)]
    }

    /// Training (EMA, usage counts, resets) or evaluation (quantisation and losses only).
    fn set_training(&self, training: bool) {
        self.training.set(training);
    }
}
