//! Training and checkpoints of a PixelCNN prior over a VQ-VAE's code maps: epochs over
//! extracted codes, test NLL in bits per code, and a K check against the VQ-VAE. Tests: `tests/vqvae.rs`.

use super::pixelcnn::{Conditioning, PixelCnn, PixelCnnConfig};
use crate::data::Epoch;
use crate::engine::{Engine, Error, Result, Tensor};
use crate::io::{self, Meta};
use crate::nn::Module;
use crate::optim::{Batch, Examples, StepInfo, Terms, TrainConfig, Trainable};
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

    /// Labels of `indices` as u32 `[n]`.
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

/// What conditions the prior for a batch of maps (by their indices in the dataset).
pub type CondFn<'a> = dyn Fn(&[usize]) -> Result<Conditioning> + 'a;

impl PriorTraining {
    /// The trainer's configuration: Adam at `lr`; the last partial batch is dropped when
    /// there is more than one batch.
    pub fn config(&self, maps: usize, data: impl Into<String>) -> TrainConfig {
        TrainConfig {
            drop_last: maps > self.batch,
            name: "prior".into(),
            ..TrainConfig::adam(self.batch, self.lr, self.seed, data)
        }
    }
}

impl Examples for CodeMaps {
    fn count(&self) -> usize {
        self.len()
    }

    /// Code maps u32 `[B, h, w]`.
    fn batch(&self, engine: &Engine, epoch: &Epoch, step: usize) -> Result<Batch> {
        let indices = epoch.batch(step).to_vec();
        Ok(Batch {
            x: CodeMaps::batch(self, engine, &indices)?,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            indices,
        })
    }
}

/// A PixelCNN prior with its objective (the mean NLL of the codes) and its conditioning.
pub struct Prior<'a> {
    pub net: PixelCnn,
    /// The code grid it models.
    pub grid: (usize, usize),
    cond: Box<CondFn<'a>>,
}

impl<'a> Prior<'a> {
    /// `net` over maps of `grid`, conditioned per batch by `cond`.
    pub fn new(net: PixelCnn, grid: (usize, usize), cond: Box<CondFn<'a>>) -> Prior<'a> {
        Prior { net, grid, cond }
    }
}

impl Module for Prior<'_> {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.net]
    }
}

impl Trainable for Prior<'_> {
    fn engine(&self) -> &Engine {
        self.net.engine()
    }

    fn describe(&self) -> Vec<(String, String)> {
        describe(&self.net.config, self.grid)
    }

    /// `nll`: mean cross entropy per code, nats.
    fn losses(&self, tape: &Tape, batch: &Batch, _at: &StepInfo) -> Result<Terms> {
        let cond = (self.cond)(&batch.indices)?;
        Ok(vec![("nll", self.net.loss(tape, &batch.x, &cond)?)])
    }
}

/// Mean NLL in bits per code of `data` under `prior` (no gradients), in batches of `batch`.
pub fn nll_bits(prior: &PixelCnn, data: &CodeMaps, cond: &CondFn, batch: usize) -> Result<f64> {
    let engine = prior.engine().clone();
    let (mut sum, mut n) = (0.0f64, 0usize);
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(batch.max(1)) {
        let b = prior.nll_bits(&data.batch(&engine, idx)?, &cond(idx)?)? as f64;
        sum += b * idx.len() as f64;
        n += idx.len();
    }
    Ok(sum / n.max(1) as f64)
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
    let meta: Meta = describe(&prior.config, grid).into_iter().collect();
    io::save_module(path, prior, &meta)
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
    ck.expect_meta(&describe(&config, grid))?;
    let prior = PixelCnn::new(engine, config, 0)?;
    io::restore_module(&ck, &prior)?;
    Ok(prior)
}
