//! VQ-VAE (van den Oord et al. 2017): conv encoder → nearest-code quantiser → conv decoder,
//! trained on MSE + codebook + commitment losses; code maps for a prior. Tests: `tests/vqvae.rs`.

use super::vq_nets::{Decoder, Encoder, NetConfig};
use crate::data::{Batches, Split};
use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::io::{self, Meta};
use crate::kernels::adam::AdamConfig;
use crate::kernels::{elementwise as ew, layout};
use crate::nn::Module;
use crate::nn::vq::{CodebookStats, VectorQuantizer, VqConfig, VqOutput};
use crate::optim::{Adam, StepLog};
use crate::tape::{Param, Tape, Var};
use std::path::Path;

/// Sizes of a [`VqVae`].
#[derive(Clone, Copy, Debug)]
pub struct VqVaeConfig {
    /// Image channels, height, width.
    pub image: [usize; 3],
    /// Channels inside encoder and decoder.
    pub hidden: usize,
    /// Channels inside each residual block.
    pub res_hidden: usize,
    pub res_blocks: usize,
    /// Stride-2 stages: latents are (H / 2^s) × (W / 2^s); 2 gives 7×7 on 28×28 images.
    pub stages: usize,
    pub vq: VqConfig,
}

impl Default for VqVaeConfig {
    /// Fashion-MNIST: 7×7 latents, K = 512 codes of D = 64, β = 0.25, dead-code reset on.
    fn default() -> Self {
        VqVaeConfig {
            image: [1, 28, 28],
            hidden: 64,
            res_hidden: 32,
            res_blocks: 2,
            stages: 2,
            vq: VqConfig::default(),
        }
    }
}

impl VqVaeConfig {
    /// The latent grid (h, w).
    pub fn latent_size(&self) -> (usize, usize) {
        let f = 1 << self.stages;
        (self.image[1] / f, self.image[2] / f)
    }

    fn net(&self) -> NetConfig {
        NetConfig {
            outer: self.image[0],
            inner: self.vq.dim,
            hidden: self.hidden,
            res_hidden: self.res_hidden,
            res_blocks: self.res_blocks,
            stages: self.stages,
        }
    }

    /// Checkpoint metadata describing the architecture (checked when a checkpoint is loaded).
    pub fn describe(&self) -> Vec<(String, String)> {
        let v = |k: &str, x: String| (k.to_string(), x);
        vec![
            v("model", "vqvae".into()),
            v("image", format!("{:?}", self.image)),
            v("hidden", self.hidden.to_string()),
            v("res_hidden", self.res_hidden.to_string()),
            v("res_blocks", self.res_blocks.to_string()),
            v("stages", self.stages.to_string()),
            v("codes", self.vq.codes.to_string()),
            v("dim", self.vq.dim.to_string()),
            v("ema", self.vq.ema.is_some().to_string()),
        ]
    }
}

/// One forward pass: the reconstruction (means of the pixels), the code maps of each level and
/// the losses.
pub struct VqForward {
    pub recon: Var,
    /// Code maps u32 [B, h, w], one per quantiser (coarsest first).
    pub indices: Vec<Tensor>,
    /// mean (x̂ − x)² over the pixels.
    pub mse: Var,
    /// Codebook and commitment losses summed over the quantisers.
    pub codebook_loss: Var,
    pub commitment_loss: Var,
    /// mse / data variance + every quantiser's loss: what training minimises.
    pub loss: Var,
}

impl VqForward {
    /// Assembles the losses of a pass from the reconstruction, the input and each level's
    /// quantiser output (in order, coarsest first).
    pub fn new(recon: Var, x: &Var, levels: Vec<VqOutput>, data_variance: f32) -> Result<Self> {
        let d = recon.sub(x)?;
        let mse = d.mul(&d)?.mean()?;
        let sum = |f: &dyn Fn(&VqOutput) -> &Var| -> Result<Var> {
            levels[1..]
                .iter()
                .try_fold(f(&levels[0]).clone(), |acc, l| acc.add(f(l)))
        };
        let vq_loss = sum(&|l| &l.loss)?;
        let codebook_loss = sum(&|l| &l.codebook_loss)?;
        let commitment_loss = sum(&|l| &l.commitment_loss)?;
        let loss = mse.affine(1.0 / data_variance, 0.0)?.add(&vq_loss)?;
        Ok(VqForward {
            recon,
            indices: levels.into_iter().map(|l| l.indices).collect(),
            mse,
            codebook_loss,
            commitment_loss,
            loss,
        })
    }
}

/// What [`VqTrainer`] needs of a VQ model (the one-level [`VqVae`], VQ-VAE-2).
pub trait VqModel: Module {
    fn engine(&self) -> &Engine;
    /// Training mode lets the quantisers update EMA state, usage and resets.
    fn set_training(&self, training: bool);
    /// The quantisers, coarsest first.
    fn quantizers(&self) -> Vec<&VectorQuantizer>;
    /// x: [B, C·H·W] pixels in [0, 1] → reconstruction, codes and losses (MSE scaled by
    /// 1 / `data_variance` in the loss, as in the paper's reference code).
    fn forward(&self, tape: &Tape, x: &Tensor, data_variance: f32) -> Result<VqForward>;
    /// Checkpoint metadata describing the architecture.
    fn describe(&self) -> Vec<(String, String)>;

    /// Parameters and buffers by name (a checkpoint's content).
    fn named(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.value().clone()))
            .collect();
        for (n, t) in self.quantizers().iter().flat_map(|q| q.buffers()) {
            if !v.iter().any(|(m, _)| *m == n) {
                v.push((n, t));
            }
        }
        v
    }

    /// Writes the model alone (no optimizer state) atomically: what a prior's training loads.
    fn save(&self, path: &Path) -> Result<()> {
        let meta: Meta = self.describe().into_iter().collect();
        io::save(path, &refs(&self.named()), &meta)
    }

    /// Overwrites this model's tensors from a checkpoint saved by [`VqModel::save`] or a
    /// [`VqTrainer`], after checking its architecture metadata.
    fn restore(&self, path: &Path) -> Result<()> {
        let ck = io::load(path)?;
        check_meta(&ck, path, &self.describe())?;
        ck.restore(&refs(&self.named()))
    }
}

pub struct VqVae {
    pub config: VqVaeConfig,
    engine: Engine,
    encoder: Encoder,
    pub quantizer: VectorQuantizer,
    decoder: Decoder,
}

impl VqVae {
    pub fn new(engine: &Engine, config: VqVaeConfig, seed: u64) -> Result<VqVae> {
        let [_, h, w] = config.image;
        let f = 1 << config.stages;
        if h % f != 0 || w % f != 0 {
            let why = format!("{h}×{w} images do not halve {} times", config.stages);
            return Err(Error::bad("VqVae::new", why));
        }
        let vq = VqConfig {
            seed: seed ^ 0x5151,
            ..config.vq
        };
        Ok(VqVae {
            config,
            engine: engine.clone(),
            encoder: Encoder::new(engine, "encoder", config.net(), seed.wrapping_add(1))?,
            quantizer: VectorQuantizer::new(engine, "vq", vq)?,
            decoder: Decoder::new(engine, "decoder", config.net(), seed.wrapping_add(2))?,
        })
    }

    /// x: [B, C·H·W] or [B, C, H, W] pixels in [0, 1] → reconstruction and losses; the MSE is
    /// divided by `data_variance` in the loss (as in the paper's reference code).
    pub fn forward(&self, tape: &Tape, x: &Tensor, data_variance: f32) -> Result<VqForward> {
        let [c, h, w] = self.config.image;
        let b = x.shape()[0];
        if x.numel() != b * c * h * w {
            return Err(Error::ShapeMismatch {
                op: "VqVae::forward",
                lhs: x.shape().to_vec(),
                rhs: vec![b, c, h, w],
            });
        }
        let xv = tape.input(&x.reshape(&[b, c, h, w])?);
        let vq = self.quantizer.forward(&self.encoder.forward(&xv)?)?;
        let recon = self.decoder.forward(&vq.z_q)?;
        VqForward::new(recon, &xv, vec![vq], data_variance)
    }

    /// Code maps u32 [B, h, w] of images [B, C·H·W] (evaluation mode, no gradients).
    pub fn encode_codes(&self, x: &Tensor) -> Result<Tensor> {
        let was = self.training();
        self.set_training(false);
        let tape = Tape::no_grad(&self.engine);
        let out = self.forward(&tape, x, 1.0).map(|mut f| f.indices.remove(0));
        self.set_training(was);
        out
    }

    fn training(&self) -> bool {
        self.quantizer.is_training()
    }

    /// Images [B, C, H, W] (pixel means, clamped to [0, 1]) decoded from code maps u32 [B, h, w].
    pub fn decode_codes(&self, codes: &Tensor) -> Result<Tensor> {
        let (h, w) = self.config.latent_size();
        codes.expect_dtype("VqVae::decode_codes", DType::U32)?;
        let b = codes.shape()[0];
        codes.expect_shape("VqVae::decode_codes", &[b, h, w])?;
        let d = self.config.vq.dim;
        let rows = layout::gather(
            self.quantizer.codebook.value(),
            &codes.reshape(&[b * h * w])?,
        )?;
        let z = layout::to_channels_first(&rows, [b, d, h, w])?;
        let tape = Tape::no_grad(&self.engine);
        let y = self.decoder.forward(&tape.input(&z))?;
        ew::clamp(y.value(), 0.0, 1.0)
    }

    /// Reconstructions [B, C, H, W] in [0, 1] of images [B, C·H·W] (evaluation mode).
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.decode_codes(&self.encode_codes(x)?)
    }

    /// A model saved by [`VqVae::save`] or by a [`VqTrainer`] checkpoint; its architecture must
    /// match `config` (the metadata is compared and a mismatch named).
    pub fn load(engine: &Engine, config: VqVaeConfig, path: &Path) -> Result<VqVae> {
        let model = VqVae::new(engine, config, 0)?;
        model.restore(path)?;
        Ok(model)
    }
}

impl VqModel for VqVae {
    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn set_training(&self, training: bool) {
        self.quantizer.set_training(training);
    }

    fn quantizers(&self) -> Vec<&VectorQuantizer> {
        vec![&self.quantizer]
    }

    fn forward(&self, tape: &Tape, x: &Tensor, data_variance: f32) -> Result<VqForward> {
        VqVae::forward(self, tape, x, data_variance)
    }

    fn describe(&self) -> Vec<(String, String)> {
        self.config.describe()
    }
}

impl Module for VqVae {
    fn params(&self) -> Vec<Param> {
        let mut p = self.encoder.params();
        p.extend(self.quantizer.params());
        p.extend(self.decoder.params());
        p
    }
}

/// Fails naming the first key whose saved value differs from `want`.
pub(crate) fn check_meta(
    ck: &io::Checkpoint,
    path: &Path,
    want: &[(String, String)],
) -> Result<()> {
    for (key, value) in want {
        let got = ck.meta(key)?;
        if got != value {
            let why = format!(
                "{} was saved with {key} = {got}, this model has {key} = {value}",
                path.display()
            );
            return Err(Error::bad("checkpoint", why));
        }
    }
    Ok(())
}

pub(crate) fn refs(named: &[(String, Tensor)]) -> Vec<(&str, &Tensor)> {
    named.iter().map(|(n, t)| (n.as_str(), t)).collect()
}

/// Means over an epoch of VQ-VAE training, and the codebook's health.
#[derive(Clone, Debug)]
pub struct VqEpochStats {
    pub epoch: u64,
    pub steps: usize,
    pub loss: f64,
    pub mse: f64,
    pub codebook_loss: f64,
    pub commitment_loss: f64,
    /// Fraction of the K codes used at least once in the epoch.
    pub usage: f64,
    pub perplexity: f64,
    pub unused: usize,
    /// Every quantiser's health, coarsest first (the fields above are the finest level's).
    pub levels: Vec<CodebookStats>,
    pub images_per_second: f64,
}

/// Adam on a VQ model over shuffled batches; losses logged on the GPU and read once per epoch.
pub struct VqTrainer<M: VqModel = VqVae> {
    pub model: M,
    adam: Adam,
    batches: Batches,
    lr: f32,
    seed: u64,
    /// Variance of the training pixels (the MSE's scale in the loss).
    pub data_variance: f32,
    step: u64,
    epoch: u64,
}

impl<M: VqModel> VqTrainer<M> {
    pub fn new(model: M, train: &Split, batch: usize, lr: f32, seed: u64) -> Result<Self> {
        let adam = Adam::new(
            model.params(),
            AdamConfig {
                lr: lr as f64,
                ..Default::default()
            },
        )?;
        let px = train.images();
        let n = px.len().max(1) as f64;
        let mean = px.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = px.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        Ok(VqTrainer {
            model,
            adam,
            batches: Batches::new(train.len(), batch, seed)?.drop_last(true),
            lr,
            seed,
            data_variance: var.max(1e-6) as f32,
            step: 0,
            epoch: 0,
        })
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// One step on a batch [B, C·H·W]; the losses stay on the GPU.
    pub fn train_step(&mut self, x: &Tensor) -> Result<VqForward> {
        self.model.set_training(true);
        let tape = Tape::new(self.model.engine());
        let f = self.model.forward(&tape, x, self.data_variance)?;
        tape.backward(&f.loss)?;
        self.adam.step()?;
        self.step += 1;
        Ok(f)
    }

    /// One epoch over `train`; `progress(step, steps)` is called after each step (no readback).
    pub fn train_epoch(
        &mut self,
        train: &Split,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<VqEpochStats> {
        let engine = self.model.engine().clone();
        let epoch = self.batches.epoch(self.epoch);
        let steps = epoch.len();
        let log = StepLog::new(&engine, 4, steps)?;
        let mut host = Vec::new();
        let start = std::time::Instant::now();
        for q in self.model.quantizers() {
            q.start_epoch()?;
        }
        let mut images = 0;
        for s in 0..steps {
            epoch.gather(train, s, &mut host);
            let b = epoch.batch(s).len();
            images += b;
            let x = Tensor::from_slice(&engine, &host, &[b, host.len() / b])?;
            let f = self.train_step(&x)?;
            for (row, v) in [&f.loss, &f.mse, &f.codebook_loss, &f.commitment_loss]
                .into_iter()
                .enumerate()
            {
                log.record(row, s, v.value())?;
            }
            engine.flush()?;
            progress(s + 1, steps);
        }
        let m = log.means("VQ-VAE training loss", self.step - steps as u64)?;
        let levels = self
            .model
            .quantizers()
            .iter()
            .map(|q| q.epoch_stats())
            .collect::<Result<Vec<_>>>()?;
        let health = &levels[levels.len() - 1];
        self.epoch += 1;
        Ok(VqEpochStats {
            epoch: self.epoch,
            steps,
            loss: m[0],
            mse: m[1],
            codebook_loss: m[2],
            commitment_loss: m[3],
            usage: health.usage,
            perplexity: health.perplexity,
            unused: health.unused,
            levels,
            images_per_second: images as f64 / start.elapsed().as_secs_f64(),
        })
    }

    fn meta(&self) -> Vec<(String, String)> {
        let mut m = self.model.describe();
        m.extend([
            ("batch".to_string(), self.batches.batch_size().to_string()),
            ("lr".to_string(), self.lr.to_string()),
            ("seed".to_string(), self.seed.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("epoch".to_string(), self.epoch.to_string()),
        ]);
        m
    }

    fn named(&self) -> Vec<(String, Tensor)> {
        let mut v = self.model.named();
        v.extend(self.adam.state());
        v
    }

    /// Model, optimizer state and position, written atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta: Meta = self.meta().into_iter().collect();
        io::save(path, &refs(&self.named()), &meta)
    }

    /// Continues a run saved by [`VqTrainer::save`] with the same settings.
    pub fn resume(
        model: M,
        train: &Split,
        batch: usize,
        lr: f32,
        seed: u64,
        path: &Path,
    ) -> Result<Self> {
        let ck = io::load(path)?;
        let mut t = VqTrainer::new(model, train, batch, lr, seed)?;
        let want: Vec<_> = t
            .meta()
            .into_iter()
            .filter(|(k, _)| k != "step" && k != "epoch")
            .collect();
        check_meta(&ck, path, &want)?;
        ck.restore(&refs(&t.named()))?;
        t.step = ck.meta_parse("step")?;
        t.epoch = ck.meta_parse("epoch")?;
        t.adam.set_steps(t.step);
        Ok(t)
    }
}

/// Test-set figures of a trained VQ-VAE.
#[derive(Clone, Debug)]
pub struct VqEval {
    /// mean (x̂ − x)² per pixel over the split.
    pub mse: f64,
    /// Fraction of codes used on the split, and the perplexity of their distribution.
    pub usage: f64,
    pub perplexity: f64,
}

/// Reconstruction MSE and code usage on `split` (evaluation mode, batches of `batch`).
pub fn evaluate(model: &VqVae, split: &Split, batch: usize) -> Result<VqEval> {
    let engine = model.engine();
    let mut counts = vec![0u32; model.config.vq.codes];
    let mut sq = 0.0f64;
    let pixels = split.pixels_per_image();
    for start in (0..split.len()).step_by(batch) {
        let n = batch.min(split.len() - start);
        let host = &split.images()[start * pixels..(start + n) * pixels];
        let x = Tensor::from_slice(engine, host, &[n, pixels])?;
        let codes = model.encode_codes(&x)?;
        let recon = model.decode_codes(&codes)?;
        for c in codes.to_vec::<u32>()? {
            counts[c as usize] += 1;
        }
        let r = recon.to_vec::<f32>()?;
        sq += r
            .iter()
            .zip(host)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum::<f64>();
    }
    Ok(VqEval {
        mse: sq / (split.len() * pixels).max(1) as f64,
        usage: crate::nn::vq::usage(&counts),
        perplexity: crate::nn::vq::perplexity(&counts),
    })
}

/// Code maps u32 [N, h, w] of a whole split (the prior's training data), in batches.
pub fn extract_codes(model: &VqVae, split: &Split, batch: usize) -> Result<Vec<u32>> {
    let engine = model.engine();
    let pixels = split.pixels_per_image();
    let mut out = Vec::with_capacity(split.len() * 49);
    for start in (0..split.len()).step_by(batch) {
        let n = batch.min(split.len() - start);
        let host = &split.images()[start * pixels..(start + n) * pixels];
        let x = Tensor::from_slice(engine, host, &[n, pixels])?;
        out.extend(model.encode_codes(&x)?.to_vec::<u32>()?);
    }
    Ok(out)
}
