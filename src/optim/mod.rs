//! Optimizers stepping each group's parameters with one launch of the fused kernels of
//! `kernels::adam` over the group's arena (`arena`: the design and its trade-off), the KL
//! weight schedules (β, linear warm-up), the GPU-side log of step losses, and the one
//! [`Trainer`].
//! Tests: `kernels-tests/adam.rs`, `kernels-tests/tape.rs`, `tests/trainer.rs`.

mod arena;
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
use crate::kernels::adam::{self, AdamConfig, SgdConfig};
use crate::tape::Param;
use arena::Run;

/// How the learning rate moves over a run's steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LrSchedule {
    /// The configured rate at every step.
    #[default]
    Constant,
    /// Step t (from 1) uses lr·½(1 + cos(π·(t − 1)/steps)): the full rate first, falling to
    /// near 0 at step `steps` (Loshchilov & Hutter 2017, without restarts), 0 beyond it.
    Cosine { steps: u64 },
}

impl LrSchedule {
    /// The multiple of the configured rate at step `t` (counted from 1).
    pub fn factor(&self, t: u64) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Cosine { steps } => {
                let done = (t.saturating_sub(1) as f64 / steps.max(1) as f64).min(1.0);
                0.5 * (1.0 + (std::f64::consts::PI * done).cos())
            }
        }
    }
}

/// What the trainer needs of an optimizer over a fixed list of parameters.
pub trait Optimizer {
    /// One update of every parameter (missing gradients count as zero), then forgets them.
    fn step(&mut self) -> Result<()>;

    /// Its state for checkpoints, by name.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Restores the step count after the state was loaded.
    fn set_steps(&mut self, step: u64);
}

/// Adam / AdamW over a fixed list of parameters: one fused launch per run of parameters
/// (one per group, usually: see `arena`), moments on the GPU laid out as the runs.
pub struct Adam {
    pub config: AdamConfig,
    params: Vec<Param>,
    runs: Vec<Run>,
    /// Each run's first and second moments, flat.
    moments: Vec<(Tensor, Tensor)>,
    /// Each parameter's moments by name: views of `moments`.
    named: Vec<(String, Tensor)>,
    step: u64,
    /// How `config.lr` moves over the steps.
    schedule: LrSchedule,
}

impl Adam {
    /// Moves the parameters into arenas (see `arena`) and makes zero moments.
    pub fn new(params: Vec<Param>, config: AdamConfig) -> Result<Adam> {
        let arena::Layout { runs, slots } = arena::layout(&params)?;
        let moments: Vec<(Tensor, Tensor)> = runs
            .iter()
            .map(|r| Ok((zeros_like(&r.value)?, zeros_like(&r.value)?)))
            .collect::<Result<_>>()?;
        let mut named = Vec::new();
        for (p, &(run, at)) in params.iter().zip(&slots) {
            let (m, v) = &moments[run];
            named.push((format!("adam.m.{}", p.name()), slice(m, at, p)?));
            named.push((format!("adam.v.{}", p.name()), slice(v, at, p)?));
        }
        Ok(Adam {
            config,
            params,
            runs,
            moments,
            named,
            step: 0,
            schedule: LrSchedule::Constant,
        })
    }

    /// The same optimizer with its learning rate following `schedule`.
    pub fn with_schedule(self, schedule: LrSchedule) -> Adam {
        Adam { schedule, ..self }
    }

    /// Steps taken so far (Adam's t).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Kernel launches per step (one per run of parameters).
    pub fn launches(&self) -> usize {
        self.runs.len()
    }
}

impl Optimizer for Adam {
    /// One update of every parameter from its gradient (a parameter no backward reached
    /// counts as having a zero gradient), then forgets the gradients.
    fn step(&mut self) -> Result<()> {
        self.step += 1;
        materialize(&self.params)?;
        let config = AdamConfig {
            lr: self.config.lr * self.schedule.factor(self.step),
            ..self.config
        };
        for (r, (m, v)) in self.runs.iter().zip(&self.moments) {
            adam::adam_step(&r.value, &r.grad, m, v, self.step, &config)?;
        }
        forget(&self.params);
        Ok(())
    }

    /// Every first and second moment: `adam.m.<param>`, `adam.v.<param>` (views of the runs'
    /// moments).
    fn state(&self) -> Vec<(String, Tensor)> {
        self.named.clone()
    }

    fn set_steps(&mut self, step: u64) {
        self.step = step;
    }
}

/// Zeros shaped as `t` (f32).
fn zeros_like(t: &Tensor) -> Result<Tensor> {
    Tensor::zeros(t.engine(), t.shape(), DType::F32)
}

/// Parameter `p`'s part of a run's state tensor `state`, from element `at`.
fn slice(state: &Tensor, at: usize, p: &Param) -> Result<Tensor> {
    state.view(at, p.value().shape())
}

/// Makes every gradient no backward wrote hold zeros.
fn materialize(params: &[Param]) -> Result<()> {
    params.iter().try_for_each(Param::materialize_grad)
}

/// Forgets every gradient (the next backward overwrites it).
fn forget(params: &[Param]) {
    params.iter().for_each(Param::zero_grad);
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

/// SGD (momentum, Nesterov, weight decay; PyTorch semantics) over a fixed list of
/// parameters, one launch per run of parameters as [`Adam`].
pub struct Sgd {
    pub config: SgdConfig,
    params: Vec<Param>,
    runs: Vec<Run>,
    /// Each run's momentum buffer, when momentum > 0.
    buffers: Option<Vec<Tensor>>,
    /// Each parameter's momentum buffer by name: views of `buffers`.
    named: Vec<(String, Tensor)>,
}

impl Sgd {
    /// Moves the parameters into arenas (see `arena`) and makes zero momentum buffers.
    pub fn new(params: Vec<Param>, config: SgdConfig) -> Result<Sgd> {
        let arena::Layout { runs, slots } = arena::layout(&params)?;
        let buffers: Option<Vec<Tensor>> = match config.momentum > 0.0 {
            true => Some(
                runs.iter()
                    .map(|r| zeros_like(&r.value))
                    .collect::<Result<_>>()?,
            ),
            false => None,
        };
        let mut named = Vec::new();
        for (p, &(run, at)) in params.iter().zip(&slots) {
            if let Some(b) = &buffers {
                named.push((format!("sgd.momentum.{}", p.name()), slice(&b[run], at, p)?));
            }
        }
        Ok(Sgd {
            config,
            params,
            runs,
            buffers,
            named,
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        materialize(&self.params)?;
        for (i, r) in self.runs.iter().enumerate() {
            let buf = self.buffers.as_ref().map(|b| &b[i]);
            adam::sgd_step(&r.value, &r.grad, buf, &self.config)?;
        }
        forget(&self.params);
        Ok(())
    }

    /// The momentum buffers: `sgd.momentum.<param>`.
    fn state(&self) -> Vec<(String, Tensor)> {
        self.named.clone()
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
