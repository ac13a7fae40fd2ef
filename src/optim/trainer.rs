//! The one training loop of every model: seeded batches, optimizer groups stepped in phases,
//! the GPU step log, a progress bar, a finiteness check per epoch, atomic checkpoints and
//! bit-exact resume. A model supplies only its objective ([`Trainable`]). Tests: `tests/trainer.rs`.

use super::{Adam, LrSchedule, Optimizer, Sgd, StepLog};
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

    /// Called once before `epoch`'s first step, outside the steps: what the epoch needs on the
    /// device goes there (`DeviceSplit` uploads the permutation). Default: nothing.
    fn start_epoch(&self, _engine: &Engine, _epoch: &Epoch) -> Result<()> {
        Ok(())
    }

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
            // A rank's part draws what its rows draw in the whole batch: its counters start at
            // its first element, 4 draws per Philox block.
            let first = epoch.share(step).0 * pixels;
            x = match first % 4 {
                0 => crate::kernels::random::bernoulli(&x, seed, offset + (first / 4) as u64)?,
                _ => {
                    // Not on a block boundary: draw the whole batch and keep this part's rows.
                    let mut all = Vec::new();
                    self.gather(epoch.whole(step), &mut all);
                    let rows = all.len() / pixels;
                    let whole = Tensor::from_slice(engine, &all, &[rows, pixels])?;
                    let drawn = crate::kernels::random::bernoulli(&whole, seed, offset)?;
                    engine.copy_region(&drawn, first, &x, 0, x.numel())?;
                    x
                }
            };
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
    /// The batch is rows `row..row + n` of this step's global batch of `rows` rows (in one
    /// process: `0` and the batch's own rows; in a data-parallel run: this rank's part).
    /// Per-example noise is drawn for all `rows` and cut with [`StepInfo::own_rows`], so that
    /// every rank draws what one process would.
    pub row: usize,
    pub rows: usize,
}

impl StepInfo {
    /// This batch's `n` rows of `all`, a tensor `[rows, ...]` drawn for the global batch
    /// (`all` itself in one process: no copy).
    pub fn own_rows(&self, all: &Tensor, n: usize) -> Result<Tensor> {
        if all.shape().first() == Some(&n) {
            return Ok(all.clone());
        }
        let mut shape = all.shape().to_vec();
        if shape.first() != Some(&self.rows) || self.row + n > self.rows {
            let why = format!(
                "rows {}..{} of a global batch of {} from a tensor {shape:?}",
                self.row,
                self.row + n,
                self.rows
            );
            return Err(Error::bad("StepInfo::own_rows", why));
        }
        let per_row = all.numel() / self.rows;
        shape[0] = n;
        let mine = Tensor::uninit(all.engine(), &shape, all.dtype())?;
        all.engine()
            .copy_region(all, self.row * per_row, &mine, 0, n * per_row)?;
        Ok(mine)
    }
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
    /// Adam whose learning rate follows a half cosine from `config.lr` down to 0 over `epochs`
    /// epochs of the trainer's batches (Loshchilov & Hutter 2017, without restarts).
    AdamCosine {
        config: AdamConfig,
        epochs: u64,
    },
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

    /// The optimizer over `params`, for a trainer of `steps_per_epoch` steps per epoch.
    fn build(&self, params: Vec<Param>, steps_per_epoch: usize) -> Result<Box<dyn Optimizer>> {
        Ok(match *self {
            OptimizerConfig::Adam(c) => Box::new(Adam::new(params, c)?),
            OptimizerConfig::AdamCosine { config, epochs } => {
                if epochs == 0 {
                    let why = "a cosine schedule needs at least one epoch";
                    return Err(Error::bad("OptimizerConfig::AdamCosine", why));
                }
                let steps = epochs * steps_per_epoch as u64;
                Box::new(Adam::new(params, config)?.with_schedule(LrSchedule::Cosine { steps }))
            }
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
    /// The other ranks of a data-parallel run, when there are some.
    #[cfg(feature = "mpi")]
    replicas: Option<super::replicas::Replicas>,
}

impl<M: Trainable> Trainer<M> {
    /// A fresh run of `model` on `examples` examples.
    ///
    /// With the feature `mpi`, in a run of several ranks, every rank must start the same
    /// command on the same data; all then take rank 0's parameters and state.
    pub fn new(model: M, config: TrainConfig, examples: usize) -> Result<Trainer<M>> {
        #[allow(unused_mut)]
        let mut t = Self::build(model, config, examples)?;
        #[cfg(feature = "mpi")]
        t.join(Ok(()), examples, 0)?;
        Ok(t)
    }

    /// The trainer of this process, before it joins the other ranks.
    fn build(model: M, config: TrainConfig, examples: usize) -> Result<Trainer<M>> {
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
        #[cfg(feature = "mpi")]
        let replicas = super::replicas::Replicas::new(&groups);
        #[cfg(feature = "mpi")]
        if let Some(r) = &replicas {
            let last = examples % config.batch;
            let smallest = match config.drop_last || last == 0 {
                true => config.batch.min(examples),
                false => last,
            };
            if smallest < r.ranks.size {
                let why = format!(
                    "a batch of {smallest} examples (batch {}, {examples} examples) cannot be \
                     shared by {} ranks; use a larger batch or drop the last one",
                    config.batch, r.ranks.size
                );
                return Err(Error::bad("Trainer::new", why));
            }
        }
        let optimizers = config
            .optimizers
            .iter()
            .zip(&groups)
            .map(|(o, g)| o.build(g.params.clone(), batches.len()))
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
            #[cfg(feature = "mpi")]
            replicas,
        })
    }

    /// In a data-parallel run: checks with the other ranks that every one got here (`local`)
    /// with the same command, settings, data and checkpoint (`checkpoint`: its fingerprint, 0
    /// for none), then takes rank 0's tensors and counters. Every rank gets the same error.
    #[cfg(feature = "mpi")]
    fn join(&mut self, local: Result<()>, examples: usize, checkpoint: u64) -> Result<()> {
        use super::replicas::fingerprint_of;
        let Some(r) = &self.replicas else {
            return local;
        };
        let settings: Vec<String> = (self.meta().into_iter())
            .filter(|(k, _)| !matches!(k.as_str(), "data" | "step" | "epoch"))
            .map(|(k, v)| format!("{k}={v}"))
            .chain([format!("examples={examples}")])
            .collect();
        let settings = fingerprint_of(settings.join("\n").as_bytes());
        let data = fingerprint_of(self.config.data.as_bytes());
        r.agree(local, [settings, data, checkpoint])?;
        let counters = self.model.counters();
        let cells: Vec<&std::cell::Cell<u64>> = counters.iter().map(|(_, c)| *c).collect();
        r.broadcast(&self.named(), &cells)
    }

    /// Time spent in the gradient all-reduce since this trainer started, in a data-parallel
    /// run of several ranks (`None` otherwise).
    #[cfg(feature = "mpi")]
    pub fn all_reduce_time(&self) -> Option<super::ReduceTime> {
        self.replicas.as_ref().map(|r| r.reduced)
    }

    /// Whether this process writes checkpoints (in a data-parallel run, rank 0 alone).
    fn writes(&self) -> bool {
        #[cfg(feature = "mpi")]
        if let Some(r) = &self.replicas {
            return r.ranks.is_root();
        }
        true
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
        #[allow(unused_mut)]
        let mut t = Self::build(model, config, examples)?;
        let loaded = t.load(path);
        #[cfg(feature = "mpi")]
        {
            // The checkpoint's bytes: every rank must resume the same one.
            let bytes = std::fs::read(path).unwrap_or_default();
            let fingerprint = super::replicas::fingerprint_of(&bytes).max(1);
            t.join(loaded, examples, fingerprint)?;
        }
        #[cfg(not(feature = "mpi"))]
        loaded?;
        Ok(t)
    }

    /// Loads the run saved in `path` into this fresh trainer (see [`Trainer::resume`]).
    fn load(&mut self, path: &Path) -> Result<()> {
        let ck = io::load(path)?;
        let want: Vec<(String, String)> = self
            .meta()
            .into_iter()
            .filter(|(k, _)| k != "step" && k != "epoch")
            .collect();
        ck.expect_meta(&want)?;
        let named = self.named();
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        ck.restore(&refs)?;
        io::restore_counters(&ck, &self.model)?;
        self.step = ck.meta_parse("step")?;
        self.epoch = ck.meta_parse("epoch")?;
        for o in &mut self.optimizers {
            o.set_steps(self.step);
        }
        self.kept = Some(path.to_path_buf());
        Ok(())
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
    ///
    /// In a data-parallel run, `batch` is this rank's part of a global batch: with the other
    /// ranks' equal parts, in rank order (the epoch loop passes the true parts).
    pub fn train_step(&mut self, batch: &Batch) -> Result<Vec<Terms>> {
        let n = batch.x.shape().first().copied().unwrap_or(0);
        #[cfg(feature = "mpi")]
        if let Some(r) = &self.replicas {
            let (rank, size) = (r.ranks.rank, r.ranks.size);
            return self.record_step(batch, rank * n, size * n);
        }
        self.record_step(batch, 0, n)
    }

    /// [`Trainer::train_step`] on rows `row..` of a global batch of `rows` rows.
    fn record_step(&mut self, batch: &Batch, row: usize, rows: usize) -> Result<Vec<Terms>> {
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
                row,
                rows,
            };
            #[cfg(feature = "mpi")]
            let collecting = self
                .replicas
                .as_ref()
                .map(|_| crate::ranks::Collecting::start());
            let terms = self.model.losses(&tape, batch, &at)?;
            let Some((_, loss)) = terms.first() else {
                let why = format!("phase {phase} returned no loss term");
                return Err(Error::bad("Trainer::train_step", why));
            };
            tape.backward(loss)?;
            #[cfg(feature = "mpi")]
            if let (Some(r), Some(c)) = (&mut self.replicas, &collecting) {
                let n = batch.x.shape()[0];
                r.all_reduce(phase, &engine, n as f32 / rows as f32, c.take())?;
            }
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
        #[cfg(feature = "mpi")]
        let epoch = match &self.replicas {
            Some(r) => epoch.part(r.ranks.rank, r.ranks.size),
            None => epoch,
        };
        let steps = epoch.len();
        // Every rank needs a row of every batch, the last (shortest) one included: checked on
        // the whole batches, so every rank finds the same answer and all stop together.
        #[cfg(feature = "mpi")]
        if let Some(r) = &self.replicas {
            let ranks = r.ranks.size;
            if let Some(s) = (0..steps).find(|&s| epoch.share(s).1 < ranks) {
                let why = format!(
                    "batch {s} of the epoch has {} rows, fewer than the {ranks} ranks: choose \
                     --batch and --train-images so that every batch has a row per rank",
                    epoch.share(s).1
                );
                return Err(Error::bad("Trainer::train_epoch", why));
            }
        }
        self.model.start_epoch()?;
        data.start_epoch(&engine, &epoch)?;
        let label = format!("{} epoch {}", self.config.name, self.epoch + 1);
        // Progress and speed count the global batches.
        let total = (0..steps).map(|s| epoch.share(s).1 as u64).sum();
        let mut progress = Progress::new(&label, total, "img");
        let mut log: Option<(StepLog, Vec<&'static str>)> = None;
        let (start, mut images) = (std::time::Instant::now(), 0u64);
        for s in 0..steps {
            if stop(self.step) {
                self.interrupted = true;
                return Ok(None);
            }
            let batch = data.batch(&engine, &epoch, s)?;
            let (row, rows) = epoch.share(s);
            images += rows as u64;
            let phases = self.record_step(&batch, row, rows)?;
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
        #[cfg(feature = "mpi")]
        if let Some(r) = &mut self.replicas {
            r.average_running_stats(&self.model.state())?;
        }
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
        #[allow(unused_mut)]
        let mut values = log.values()?;
        #[cfg(feature = "mpi")]
        if let Some(r) = &mut self.replicas {
            r.reduce_log(&mut values, &epoch)?;
        }
        let per_step = log.checked_rows(values, "training loss", self.step - steps as u64)?;
        let means = per_step.iter().map(|r| super::mean(r)).collect::<Vec<_>>();
        self.epoch += 1;
        if let Some(path) = self.config.checkpoint.clone() {
            if self.writes() {
                self.save(&path)?;
            }
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
