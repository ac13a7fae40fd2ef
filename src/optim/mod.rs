//! Optimizers stepping every parameter with the fused kernels of `kernels::adam`, the KL weight
//! schedules (β, linear warm-up), the GPU-side log of step losses, and the one [`Trainer`].
//! Tests: `kernels-tests/tape.rs`, `tests/trainer.rs`.

#[cfg(feature = "mpi")]
mod replicas;
mod trainer;
#[cfg(feature = "mpi")]
pub use replicas::ReduceTime;
pub use trainer::{
    Batch, EpochStats, Examples, Group, OptimizerConfig, StepInfo, Terms, TrainConfig, Trainable,
    Trainer,
};

use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::kernels::adam::{self, AdamConfig};
use crate::tape::Param;

/// What the trainer needs of an optimizer over a fixed list of parameters.
pub trait Optimizer {
    /// One update of every parameter (missing gradients count as zero), then forgets them.
    fn step(&mut self) -> Result<()>;

    /// Its state for checkpoints, by name.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Restores the step count after the state was loaded.
    fn set_steps(&mut self, step: u64);
}

/// Adam / AdamW over a fixed list of parameters (moments live on the GPU).
pub struct Adam {
    pub config: AdamConfig,
    params: Vec<Param>,
    moments: Vec<(Tensor, Tensor)>,
    step: u64,
}

impl Adam {
    pub fn new(params: Vec<Param>, config: AdamConfig) -> Result<Adam> {
        let moments = params
            .iter()
            .map(|p| {
                let e = p.value().engine();
                Ok((
                    Tensor::zeros(e, p.value().shape(), DType::F32)?,
                    Tensor::zeros(e, p.value().shape(), DType::F32)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Adam {
            config,
            params,
            moments,
            step: 0,
        })
    }

    /// Steps taken so far (Adam's t).
    pub fn steps(&self) -> u64 {
        self.step
    }
}

impl Optimizer for Adam {
    /// One update of every parameter from its gradient (a parameter no backward reached
    /// counts as having a zero gradient), then forgets the gradients.
    fn step(&mut self) -> Result<()> {
        self.step += 1;
        for (p, (m, v)) in self.params.iter().zip(&self.moments) {
            p.materialize_grad()?;
            adam::adam_step(p.value(), p.grad(), m, v, self.step, &self.config)?;
            p.zero_grad();
        }
        Ok(())
    }

    /// Every first and second moment: `adam.m.<param>`, `adam.v.<param>`.
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (p, (m, v)) in self.params.iter().zip(&self.moments) {
            out.push((format!("adam.m.{}", p.name()), m.clone()));
            out.push((format!("adam.v.{}", p.name()), v.clone()));
        }
        out
    }

    fn set_steps(&mut self, step: u64) {
        self.step = step;
    }
}

/// The KL weight at a training step: β, ramped linearly from 0 over `warmup` steps
/// (Sønderby et al. 2016; `warmup` = 0 means constant β).
#[derive(Clone, Copy, Debug)]
pub struct KlSchedule {
    pub beta: f32,
    pub warmup: u64,
}

impl KlSchedule {
    pub fn weight(&self, step: u64) -> f32 {
        if self.warmup == 0 {
            self.beta
        } else {
            self.beta * (step as f32 / self.warmup as f32).min(1.0)
        }
    }
}

/// SGD (momentum, Nesterov, weight decay; PyTorch semantics) over a fixed list of parameters.
pub struct Sgd {
    pub config: crate::kernels::adam::SgdConfig,
    params: Vec<Param>,
    /// Momentum buffers, when momentum > 0.
    buffers: Option<Vec<Tensor>>,
}

impl Sgd {
    pub fn new(params: Vec<Param>, config: crate::kernels::adam::SgdConfig) -> Result<Sgd> {
        let buffers = if config.momentum > 0.0 {
            let zeros =
                |p: &Param| Tensor::zeros(p.value().engine(), p.value().shape(), DType::F32);
            Some(params.iter().map(zeros).collect::<Result<_>>()?)
        } else {
            None
        };
        Ok(Sgd {
            config,
            params,
            buffers,
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        for (i, p) in self.params.iter().enumerate() {
            p.materialize_grad()?;
            let buf = self.buffers.as_ref().map(|b| &b[i]);
            adam::sgd_step(p.value(), p.grad(), buf, &self.config)?;
            p.zero_grad();
        }
        Ok(())
    }

    /// The momentum buffers: `sgd.momentum.<param>`.
    fn state(&self) -> Vec<(String, Tensor)> {
        let Some(bufs) = &self.buffers else {
            return Vec::new();
        };
        self.params
            .iter()
            .zip(bufs)
            .map(|(p, b)| (format!("sgd.momentum.{}", p.name()), b.clone()))
            .collect()
    }

    /// SGD has no step count.
    fn set_steps(&mut self, _step: u64) {}
}

/// One-element values (a step's loss and its parts) copied on the GPU into one buffer of
/// `series` rows × `steps`, read back once, so that no training step waits for the host.
pub struct StepLog {
    log: Tensor,
    steps: usize,
}

impl StepLog {
    pub fn new(engine: &Engine, series: usize, steps: usize) -> Result<StepLog> {
        let log = Tensor::zeros(engine, &[series, steps], DType::F32)?;
        Ok(StepLog { log, steps })
    }

    /// Records the copy of `value`'s first element into row `series`, column `step`.
    pub fn record(&self, series: usize, step: usize, value: &Tensor) -> Result<()> {
        let engine = self.log.engine();
        engine.copy_region(value, 0, &self.log, series * self.steps + step, 1)
    }

    /// The mean of row `series` over its first `steps` steps (one readback: for a progress
    /// bar every few seconds, not every step).
    pub fn running_mean(&self, series: usize, steps: usize) -> Result<f64> {
        let values = self.log.to_vec::<f32>()?;
        let row = &values[series * self.steps..series * self.steps + steps.min(self.steps)];
        Ok(mean(row))
    }

    /// Each row's mean over the steps. A non-finite value in row 0 (the loss) is
    /// `Error::NonFinite` naming the step, counted from `first_step`.
    pub fn means(&self, what: &'static str, first_step: u64) -> Result<Vec<f64>> {
        Ok(self
            .rows(what, first_step)?
            .iter()
            .map(|r| mean(r))
            .collect())
    }

    /// Every row's per-step values (one readback), checked as [`StepLog::means`] checks them.
    pub fn rows(&self, what: &'static str, first_step: u64) -> Result<Vec<Vec<f32>>> {
        self.checked_rows(self.values()?, what, first_step)
    }

    /// The log `[series, steps]` as it stands (one readback), unchecked.
    pub(crate) fn values(&self) -> Result<Vec<f32>> {
        self.log.to_vec::<f32>()
    }

    /// `values` of this log split into rows, checked as [`StepLog::rows`] checks them.
    pub(crate) fn checked_rows(
        &self,
        values: Vec<f32>,
        what: &'static str,
        first_step: u64,
    ) -> Result<Vec<Vec<f32>>> {
        if let Some(s) = values[..self.steps].iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what,
                step: first_step + s as u64,
                value: values[s],
            });
        }
        Ok(values.chunks(self.steps).map(<[f32]>::to_vec).collect())
    }
}

/// The mean of `values` in f64 (0 for none).
pub(crate) fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64
}
