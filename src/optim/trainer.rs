//! The one training loop of every model: seeded batches, optimizer groups stepped in phases,
//! the GPU step log, a progress bar, a finiteness check per epoch, atomic checkpoints and
//! bit-exact resume. A model supplies only its objective ([`Trainable`]). Tests: `tests/trainer.rs`.

use super::{Adam, Optimizer, Sgd, StepLog};
use crate::data::{Batches, Epoch, Split};
use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::io::{self, Meta, OPTIMIZER_PREFIX, Progress};
use crate::kernels::adam::{AdamConfig, SgdConfig};
use crate::kernels::{elementwise as ew, reduce};
use crate::nn::Module;
use crate::tape::{Param, Tape, Var};
use std::path::{Path, PathBuf};

/// One batch as the model sees it: the inputs on the GPU, the labels on the host, and the
/// examples' indices in the data set (for conditioning looked up per example).
pub struct Batch {
    /// Images `[B, pixels]` (f32) or code maps `[B, h, w]` (u32).
    pub x: Tensor,
    pub labels: Vec<u8>,
    pub indices: Vec<usize>,
}

/// A data set the trainer can batch.
pub trait Examples {
    fn count(&self) -> usize;

    /// Batch `step` of `epoch`'s order.
    fn batch(&self, engine: &Engine, epoch: &Epoch, step: usize) -> Result<Batch>;
}

impl Examples for Split {
    fn count(&self) -> usize {
        self.len()
    }

    /// Images `[B, pixels]`, binarised on the GPU after the upload when the trainer's batches
    /// are (no host work: [`Epoch::binarization`]).
    fn batch(&self, engine: &Engine, epoch: &Epoch, step: usize) -> Result<Batch> {
        let mut host = Vec::new();
        let indices = epoch.gather(self, step, &mut host).to_vec();
        let pixels = self.pixels_per_image();
        let mut x = Tensor::from_slice(engine, &host, &[indices.len(), pixels])?;
        if let Some((seed, offset)) = epoch.binarization(step, pixels) {
            x = crate::kernels::random::bernoulli(&x, seed, offset)?;
        }
        let labels = indices.iter().map(|&i| self.labels()[i]).collect();
        Ok(Batch { x, labels, indices })
    }
}

/// Where a step is: what a model needs to replay its noise and schedules exactly.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// Steps taken before this one over the whole run.
    pub step: u64,
    /// The phase being recorded (the index of the optimizer group it steps).
    pub phase: usize,
    /// The run's seed.
    pub seed: u64,
    /// The configured batch size (the last batch of an epoch may be smaller).
    pub batch: usize,
}

/// Named loss terms of one phase; the first is minimised, the others are logged.
pub type Terms = Vec<(&'static str, Var)>;

/// Parameters stepped by one optimizer.
pub struct Group {
    pub name: &'static str,
    pub params: Vec<Param>,
}

/// A model with its objective: everything the trainer needs beyond [`Module`].
pub trait Trainable: Module {
    fn engine(&self) -> &Engine;

    /// Architecture and objective settings, stored in checkpoints and compared on resume.
    fn describe(&self) -> Vec<(String, String)>;

    /// The optimizer groups, one per phase of a step (phase i minimises phase i's first term
    /// and steps group i). Default: one group of every parameter.
    fn groups(&self) -> Vec<Group> {
        vec![Group {
            name: "model",
            params: self.params(),
        }]
    }

    /// Called before each epoch (a quantiser starts counting code usage afresh).
    fn start_epoch(&self) -> Result<()> {
        Ok(())
    }

    /// The loss terms of phase `at.phase` on `batch`, recorded on `tape`.
    fn losses(&self, tape: &Tape, batch: &Batch, at: &StepInfo) -> Result<Terms>;
}

/// An optimizer and its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerConfig {
    Adam(AdamConfig),
    Sgd(SgdConfig),
}

impl OptimizerConfig {
    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam(lr: f64) -> OptimizerConfig {
        OptimizerConfig::Adam(AdamConfig {
            lr,
            ..Default::default()
        })
    }

    fn build(&self, params: Vec<Param>) -> Result<Box<dyn Optimizer>> {
        Ok(match *self {
            OptimizerConfig::Adam(c) => Box::new(Adam::new(params, c)?),
            OptimizerConfig::Sgd(c) => Box::new(Sgd::new(params, c)?),
        })
    }
}

/// How a run trains; all of it but `checkpoint` and `name` goes into the checkpoint and must
/// match on resume.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub batch: usize,
    /// Seeds the data order and whatever noise the model draws (through [`StepInfo`]).
    pub seed: u64,
    /// Dynamic binarisation of the pixels (images only).
    pub binarize: bool,
    /// Drop an epoch's last, smaller batch.
    pub drop_last: bool,
    /// One optimizer per group of [`Trainable::groups`], in order.
    pub optimizers: Vec<OptimizerConfig>,
    /// The training data's identity, stored as `data`: a resume on other data is refused.
    pub data: String,
    /// Written atomically after every epoch that passes the finiteness check.
    pub checkpoint: Option<PathBuf>,
    /// The progress bar's label.
    pub name: String,
}

impl TrainConfig {
    /// One Adam group with learning rate `lr`; keeps the last batch, no binarisation, no
    /// checkpoint.
    pub fn adam(batch: usize, lr: f64, seed: u64, data: impl Into<String>) -> TrainConfig {
        TrainConfig {
            batch,
            seed,
            binarize: false,
            drop_last: false,
            optimizers: vec![OptimizerConfig::adam(lr)],
            data: data.into(),
            checkpoint: None,
            name: "train".into(),
        }
    }
}

/// Means over an epoch's steps of every logged term, read back once at its end.
#[derive(Clone, Debug)]
pub struct EpochStats {
    /// Epochs completed.
    pub epoch: u64,
    pub steps: usize,
    pub terms: Vec<(&'static str, f64)>,
    /// Every term's value at each step of the epoch, in the order of `terms`.
    pub per_step: Vec<Vec<f32>>,
    /// Examples per second.
    pub images_per_second: f64,
}

impl EpochStats {
    /// The mean of the term called `name` (NaN if the model logs no such term).
    pub fn term(&self, name: &str) -> f64 {
        let hit = self.terms.iter().find(|(n, _)| *n == name);
        hit.map_or(f64::NAN, |&(_, v)| v)
    }

    /// The per-step values of the term called `name` (empty if the model logs no such term).
    pub fn steps_of(&self, name: &str) -> &[f32] {
        let at = self.terms.iter().position(|(n, _)| *n == name);
        at.map_or(&[], |i| &self.per_step[i])
    }
}

/// Training state: model, optimizers and the counters that make a run replayable.
pub struct Trainer<M: Trainable> {
    pub model: M,
    pub config: TrainConfig,
    groups: Vec<&'static str>,
    optimizers: Vec<Box<dyn Optimizer>>,
    batches: Batches,
    /// Steps taken over all epochs.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// The last good checkpoint (written by this run or resumed from).
    kept: Option<PathBuf>,
    interrupted: bool,
}

impl<M: Trainable> Trainer<M> {
    /// A fresh run of `model` on `examples` examples.
    pub fn new(model: M, config: TrainConfig, examples: usize) -> Result<Trainer<M>> {
        let groups = model.groups();
        if groups.len() != config.optimizers.len() {
            let names: Vec<&str> = groups.iter().map(|g| g.name).collect();
            let why = format!(
                "the model trains {} optimizer groups ({}), the configuration has {} optimizers",
                groups.len(),
                names.join(", "),
                config.optimizers.len()
            );
            return Err(Error::bad("Trainer::new", why));
        }
        let batches = Batches::new(examples, config.batch, config.seed)?
            .drop_last(config.drop_last)
            .binarize(config.binarize);
        if batches.is_empty() {
            let why = format!(
                "{examples} examples make no full batch of {} (drop_last)",
                config.batch
            );
            return Err(Error::bad("Trainer::new", why));
        }
        let optimizers = config
            .optimizers
            .iter()
            .zip(&groups)
            .map(|(o, g)| o.build(g.params.clone()))
            .collect::<Result<_>>()?;
        Ok(Trainer {
            groups: groups.iter().map(|g| g.name).collect(),
            model,
            config,
            optimizers,
            batches,
            step: 0,
            epoch: 0,
            kept: None,
            interrupted: false,
        })
    }

    /// Continues the run saved in `path` with `model` (built as the saved one was): the model
    /// description, training settings and data identity must match the checkpoint, and every
    /// tensor must be there, with its shape, finite, and nothing else.
    pub fn resume(
        model: M,
        config: TrainConfig,
        examples: usize,
        path: &Path,
    ) -> Result<Trainer<M>> {
        let ck = io::load(path)?;
        let mut t = Trainer::new(model, config, examples)?;
        let want: Vec<(String, String)> = t
            .meta()
            .into_iter()
            .filter(|(k, _)| k != "step" && k != "epoch")
            .collect();
        ck.expect_meta(&want)?;
        let named = t.named();
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        ck.restore(&refs)?;
        io::restore_counters(&ck, &t.model)?;
        t.step = ck.meta_parse("step")?;
        t.epoch = ck.meta_parse("epoch")?;
        for o in &mut t.optimizers {
            o.set_steps(t.step);
        }
        t.kept = Some(path.to_path_buf());
        Ok(t)
    }

    /// Saves parameters, state, optimizer state and counters atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta: Meta = self.meta().into_iter().collect();
        let (_, meta) = io::module_contents(&self.model, &meta);
        let named = self.named();
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        io::save(path, &refs, &meta)
    }

    /// The model's tensors, then each group's optimizer state under [`OPTIMIZER_PREFIX`].
    fn named(&self) -> Vec<(String, Tensor)> {
        let mut v = self.model.named_tensors();
        for (g, o) in self.groups.iter().zip(&self.optimizers) {
            for (name, t) in o.state() {
                v.push((format!("{OPTIMIZER_PREFIX}{g}.{name}"), t));
            }
        }
        v
    }

    fn meta(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let mut m = self.model.describe();
        let mut put = |k: &str, v: String| m.push((k.to_string(), v));
        put("batch", c.batch.to_string());
        put("seed", c.seed.to_string());
        put("binarize", c.binarize.to_string());
        put("drop_last", c.drop_last.to_string());
        put("groups", self.groups.join(","));
        for (g, o) in self.groups.iter().zip(&c.optimizers) {
            put(&format!("optimizer.{g}"), format!("{o:?}"));
        }
        put("data", c.data.clone());
        put("step", self.step.to_string());
        put("epoch", self.epoch.to_string());
        m
    }

    /// Records one training step on `batch`: for each phase a fresh tape, the model's loss
    /// terms, backward from the first, and that group's update; nothing is submitted or read
    /// back. Returns each phase's terms.
    pub fn train_step(&mut self, batch: &Batch) -> Result<Vec<Terms>> {
        let engine = self.model.engine().clone();
        self.model.set_training(true);
        let all = self.model.params();
        let mut out = Vec::with_capacity(self.optimizers.len());
        for (phase, opt) in self.optimizers.iter_mut().enumerate() {
            let tape = Tape::new(&engine);
            let at = StepInfo {
                step: self.step,
                phase,
                seed: self.config.seed,
                batch: self.config.batch,
            };
            let terms = self.model.losses(&tape, batch, &at)?;
            let Some((_, loss)) = terms.first() else {
                let why = format!("phase {phase} returned no loss term");
                return Err(Error::bad("Trainer::train_step", why));
            };
            tape.backward(loss)?;
            opt.step()?;
            // A backward also reaches parameters of other groups: forget those gradients so
            // that the next phase starts from zero.
            for p in &all {
                p.zero_grad();
            }
            out.push(terms);
        }
        self.step += 1;
        Ok(out)
    }

    /// One epoch over `data` (see [`Trainer::train_epoch_until`]).
    pub fn train_epoch(&mut self, data: &impl Examples) -> Result<EpochStats> {
        let stats = self.train_epoch_until(data, &mut |_| false)?;
        Ok(stats.expect("never stopped"))
    }

    /// One epoch over `data` in the epoch's seeded order, each step one submission with no
    /// readback; the step log is read once at the end (and every [`io::LOSS_EVERY`] for a
    /// live progress bar). Then one GPU reduction checks every parameter, state tensor and
    /// optimizer moment: a non-finite one stops the run naming it, and the last good
    /// checkpoint is left as it was. Otherwise the checkpoint is written. `stop(step)` is asked
    /// before each step; `true` abandons the epoch as a killed run would (no checkpoint,
    /// `Ok(None)`), after which this trainer refuses to continue.
    pub fn train_epoch_until(
        &mut self,
        data: &impl Examples,
        stop: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Option<EpochStats>> {
        if self.interrupted {
            let why = "this run was interrupted mid-epoch; resume it from its checkpoint";
            return Err(Error::bad("Trainer::train_epoch", why));
        }
        let engine = self.model.engine().clone();
        let epoch = self.batches.epoch(self.epoch);
        let steps = epoch.len();
        self.model.start_epoch()?;
        let label = format!("{} epoch {}", self.config.name, self.epoch + 1);
        let total = (0..steps).map(|s| epoch.batch(s).len() as u64).sum();
        let mut progress = Progress::new(&label, total, "img");
        let mut log: Option<(StepLog, Vec<&'static str>)> = None;
        let (start, mut images) = (std::time::Instant::now(), 0u64);
        for s in 0..steps {
            if stop(self.step) {
                self.interrupted = true;
                return Ok(None);
            }
            let batch = data.batch(&engine, &epoch, s)?;
            images += batch.indices.len() as u64;
            let phases = self.train_step(&batch)?;
            let terms: Vec<&(&'static str, Var)> = phases.iter().flatten().collect();
            let (log, _) = match &mut log {
                Some(l) => l,
                None => log.insert((
                    StepLog::new(&engine, terms.len(), steps)?,
                    terms.iter().map(|(n, _)| *n).collect(),
                )),
            };
            for (row, (_, v)) in terms.iter().enumerate() {
                log.record(row, s, v.value())?;
            }
            engine.flush()?;
            progress.set(images);
            if progress.wants_loss() {
                let mean = log.running_mean(0, s + 1)?;
                progress.show_loss(terms[0].0, mean);
            }
        }
        progress.finish();
        // The tensors first: on lavapipe a NaN weight can pass a ReLU as 0 and leave the loss
        // finite, and a non-finite loss leaves non-finite gradients in the moments.
        if let Some(tensor) = self.first_non_finite()? {
            return Err(Error::Diverged {
                tensor,
                step: self.step,
                kept: self.kept.clone(),
            });
        }
        let (log, names) = log.expect("an epoch has a step");
        let per_step = log.rows("training loss", self.step - steps as u64)?;
        let means = per_step.iter().map(|r| super::mean(r)).collect::<Vec<_>>();
        self.epoch += 1;
        if let Some(path) = self.config.checkpoint.clone() {
            self.save(&path)?;
            self.kept = Some(path);
        }
        Ok(Some(EpochStats {
            epoch: self.epoch,
            steps,
            terms: names.into_iter().zip(means).collect(),
            per_step,
            images_per_second: images as f64 / start.elapsed().as_secs_f64(),
        }))
    }

    /// The name of the first f32 tensor (parameter, state or optimizer moment) holding a NaN
    /// or an infinity. One reduction per tensor of 0·x (0 where finite, NaN otherwise) into
    /// one flag each, read back together.
    pub fn first_non_finite(&self) -> Result<Option<String>> {
        let named: Vec<(String, Tensor)> = self
            .named()
            .into_iter()
            .filter(|(_, t)| t.dtype() == DType::F32)
            .collect();
        let engine = self.model.engine();
        let flags = Tensor::zeros(engine, &[named.len()], DType::F32)?;
        for (i, (_, t)) in named.iter().enumerate() {
            let zeroed = ew::affine(t, 0.0, 0.0)?;
            engine.copy_region(&reduce::sum_all(&zeroed)?, 0, &flags, i, 1)?;
        }
        let flags = flags.to_vec::<f32>()?;
        Ok(flags
            .iter()
            .position(|f| !f.is_finite())
            .map(|i| named[i].0.clone()))
    }

    /// The checkpoint this run can fall back to, if any.
    pub fn kept_checkpoint(&self) -> Option<&Path> {
        self.kept.as_deref()
    }
}
