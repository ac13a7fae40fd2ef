//! Training and checkpoints of a PixelCNN prior over a VQ-VAE's code maps: epochs over
//! extracted codes, test NLL in bits per code, and a K check against the VQ-VAE. Tests: `tests/vqvae.rs`.

use super::pixelcnn::{Conditioning, PixelCnn, PixelCnnConfig, bits};
use super::vqvae::{check_meta, refs};
use crate::data::Batches;
use crate::engine::{Engine, Error, Result, Tensor};
use crate::io::{self, Meta};
use crate::kernels::adam::AdamConfig;
use crate::nn::Module;
use crate::optim::{Adam, StepLog};
use crate::tape::Tape;
use std::path::Path;

/// Code maps (u32, n × h × w, row-major) with their class labels: a prior's dataset.
#[derive(Clone, Debug)]
pub struct CodeMaps {
    pub codes: Vec<u32>,
    pub labels: Vec<u8>,
    pub h: usize,
    pub w: usize,
}

impl CodeMaps {
    pub fn new(codes: Vec<u32>, labels: Vec<u8>, h: usize, w: usize) -> Result<CodeMaps> {
        if h * w == 0 || codes.len() != labels.len() * h * w {
            let why = format!("{} codes for {} maps of {h}×{w}", codes.len(), labels.len());
            return Err(Error::bad("CodeMaps::new", why));
        }
        Ok(CodeMaps {
            codes,
            labels,
            h,
            w,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Maps `indices` as u32 [n, h, w] on the GPU.
    pub fn batch(&self, engine: &Engine, indices: &[usize]) -> Result<Tensor> {
        let hw = self.h * self.w;
        let mut host = Vec::with_capacity(indices.len() * hw);
        for &i in indices {
            host.extend_from_slice(&self.codes[i * hw..(i + 1) * hw]);
        }
        Tensor::from_slice(engine, &host, &[indices.len(), self.h, self.w])
    }

    /// Labels of `indices` as u32 [n].
    pub fn batch_labels(&self, engine: &Engine, indices: &[usize]) -> Result<Tensor> {
        let host: Vec<u32> = indices.iter().map(|&i| self.labels[i] as u32).collect();
        Tensor::from_slice(engine, &host, &[indices.len()])
    }
}

/// How a prior is trained.
#[derive(Clone, Copy, Debug)]
pub struct PriorTraining {
    pub epochs: u64,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for PriorTraining {
    fn default() -> Self {
        PriorTraining {
            epochs: 5,
            batch: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// One epoch of prior training: mean NLL in bits per code.
#[derive(Clone, Debug)]
pub struct PriorEpoch {
    pub epoch: u64,
    pub steps: usize,
    pub nll_bits: f64,
    pub maps_per_second: f64,
}

/// What conditions the prior for a batch of maps (by their indices in the dataset).
pub type CondFn<'a> = dyn Fn(&[usize]) -> Result<Conditioning> + 'a;

/// Trains `prior` on `data` with Adam; `cond` builds each batch's conditioning; `progress` is
/// called after every step (step, steps) and every epoch. No readback inside an epoch.
pub fn train_prior(
    prior: &PixelCnn,
    data: &CodeMaps,
    cond: &CondFn,
    t: &PriorTraining,
    progress: &mut dyn FnMut(Option<&PriorEpoch>, usize, usize),
) -> Result<()> {
    let engine = prior_engine(prior);
    let mut adam = Adam::new(
        prior.params(),
        AdamConfig {
            lr: t.lr,
            ..Default::default()
        },
    )?;
    let batches = Batches::new(data.len(), t.batch, t.seed)?.drop_last(data.len() > t.batch);
    for e in 0..t.epochs {
        let order = batches.epoch(e);
        let steps = order.len();
        let log = StepLog::new(&engine, 1, steps)?;
        let start = std::time::Instant::now();
        let mut maps = 0;
        for s in 0..steps {
            let idx = order.batch(s);
            maps += idx.len();
            let codes = data.batch(&engine, idx)?;
            let tape = Tape::new(&engine);
            let loss = prior.loss(&tape, &codes, &cond(idx)?)?;
            tape.backward(&loss)?;
            adam.step()?;
            log.record(0, s, loss.value())?;
            engine.flush()?;
            progress(None, s + 1, steps);
        }
        let nats = log.means("prior loss", e * steps as u64)?[0];
        let stats = PriorEpoch {
            epoch: e + 1,
            steps,
            nll_bits: bits(nats as f32) as f64,
            maps_per_second: maps as f64 / start.elapsed().as_secs_f64(),
        };
        progress(Some(&stats), steps, steps);
    }
    Ok(())
}

/// Mean NLL in bits per code of `data` under `prior` (no gradients), in batches of `batch`.
pub fn nll_bits(prior: &PixelCnn, data: &CodeMaps, cond: &CondFn, batch: usize) -> Result<f64> {
    let engine = prior_engine(prior);
    let (mut sum, mut n) = (0.0f64, 0usize);
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(batch.max(1)) {
        let b = prior.nll_bits(&data.batch(&engine, idx)?, &cond(idx)?)? as f64;
        sum += b * idx.len() as f64;
        n += idx.len();
    }
    Ok(sum / n.max(1) as f64)
}

fn prior_engine(prior: &PixelCnn) -> Engine {
    prior.params()[0].value().engine().clone()
}

/// Checkpoint metadata of a prior: its architecture and the code grid it models.
fn describe(c: &PixelCnnConfig, (h, w): (usize, usize)) -> Vec<(String, String)> {
    let v = |k: &str, x: String| (k.to_string(), x);
    vec![
        v("model", "pixelcnn".into()),
        v("codes", c.codes.to_string()),
        v("channels", c.channels.to_string()),
        v("blocks", c.blocks.to_string()),
        v("kernel", c.kernel.to_string()),
        v("hidden", c.hidden.to_string()),
        v("classes", c.classes.to_string()),
        v("spatial", format!("{:?}", c.spatial)),
        v("grid", format!("{h}x{w}")),
    ]
}

/// Writes the prior (parameters and architecture) atomically.
pub fn save_prior(prior: &PixelCnn, grid: (usize, usize), path: &Path) -> Result<()> {
    let named: Vec<(String, Tensor)> = prior
        .params()
        .iter()
        .map(|p| (p.name().to_string(), p.value().clone()))
        .collect();
    let meta: Meta = describe(&prior.config, grid).into_iter().collect();
    io::save(path, &refs(&named), &meta)
}

/// Loads a prior saved by [`save_prior`] for a VQ-VAE with `codes` codes on a `grid` of codes.
/// A prior trained for another codebook size is refused with both sizes named.
pub fn load_prior(
    engine: &Engine,
    config: PixelCnnConfig,
    grid: (usize, usize),
    path: &Path,
) -> Result<PixelCnn> {
    let ck = io::load(path)?;
    let saved: usize = ck.meta_parse("codes")?;
    if saved != config.codes {
        let why = format!(
            "{} is a prior over {saved} codes, but the VQ-VAE's codebook has {} codes",
            path.display(),
            config.codes
        );
        return Err(Error::bad("load_prior", why));
    }
    check_meta(&ck, path, &describe(&config, grid))?;
    let prior = PixelCnn::new(engine, config, 0)?;
    let named: Vec<(String, Tensor)> = prior
        .params()
        .iter()
        .map(|p| (p.name().to_string(), p.value().clone()))
        .collect();
    ck.restore(&refs(&named))?;
    Ok(prior)
}
