//! VQ-VAE (van den Oord et al. 2017): conv encoder → nearest-code quantiser → conv decoder,
//! trained on MSE + codebook + commitment losses; code maps for a prior. Tests: `tests/vqvae.rs`.

use super::vq_nets::{Decoder, Encoder, NetConfig};
use crate::data::{Batches, Split};
use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::io::{self, Meta};
use crate::kernels::adam::AdamConfig;
use crate::kernels::{conv2d, elementwise as ew, layout};
use crate::nn::Module;
use crate::nn::vq::{VectorQuantizer, VqConfig, VqOutput};
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

/// One forward pass: the reconstruction (means of the pixels) and the quantiser's output.
pub struct VqForward {
    pub recon: Var,
    pub vq: VqOutput,
    /// mean (x̂ − x)² over the pixels.
    pub mse: Var,
    /// mse / data variance + codebook and commitment losses: what training minimises.
    pub loss: Var,
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

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Training mode updates the codebook's EMA / usage / resets during forward passes.
    pub fn set_training(&self, training: bool) {
        self.quantizer.set_training(training);
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
        let d = recon.sub(&xv)?;
        let mse = d.mul(&d)?.mean()?;
        let loss = mse.affine(1.0 / data_variance, 0.0)?.add(&vq.loss)?;
        Ok(VqForward {
            recon,
            vq,
            mse,
            loss,
        })
    }

    /// Code maps u32 [B, h, w] of images [B, C·H·W] (evaluation mode, no gradients).
    pub fn encode_codes(&self, x: &Tensor) -> Result<Tensor> {
        let was = self.training();
        self.set_training(false);
        let tape = Tape::no_grad(&self.engine);
        let out = self.forward(&tape, x, 1.0).map(|f| f.vq.indices);
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
        let z = conv2d::to_channels_first(&rows, [b, d, h, w])?;
        let tape = Tape::no_grad(&self.engine);
        let y = self.decoder.forward(&tape.input(&z))?;
        ew::clamp(y.value(), 0.0, 1.0)
    }

    /// Reconstructions [B, C, H, W] in [0, 1] of images [B, C·H·W] (evaluation mode).
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.decode_codes(&self.encode_codes(x)?)
    }

    /// Tensors beyond the parameters that a checkpoint must hold (codebook statistics).
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.quantizer.buffers()
    }

    /// Parameters and buffers by name (a checkpoint's content).
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.value().clone()))
            .collect();
        for (n, t) in self.buffers() {
            if !v.iter().any(|(m, _)| *m == n) {
                v.push((n, t));
            }
        }
        v
    }

    /// Writes the model alone (no optimizer state) atomically: what a prior's training loads.
    pub fn save(&self, path: &Path) -> Result<()> {
        let named = self.named();
        let meta: Meta = self.config.describe().into_iter().collect();
        io::save(path, &refs(&named), &meta)
    }

    /// A model saved by [`VqVae::save`] or by a [`VqTrainer`] checkpoint; its architecture must
    /// match `config` (the metadata is compared and a mismatch named).
    pub fn load(engine: &Engine, config: VqVaeConfig, path: &Path) -> Result<VqVae> {
        let ck = io::load(path)?;
        check_meta(&ck, path, &config.describe())?;
        let model = VqVae::new(engine, config, 0)?;
        ck.restore(&refs(&model.named()))?;
        Ok(model)
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
    pub images_per_second: f64,
}

/// Adam on a [`VqVae`] over shuffled batches; losses logged on the GPU and read once per epoch.
pub struct VqTrainer {
    pub model: VqVae,
    adam: Adam,
    batches: Batches,
    lr: f32,
    seed: u64,
    /// Variance of the training pixels (the MSE's scale in the loss).
    pub data_variance: f32,
    step: u64,
    epoch: u64,
}

impl VqTrainer {
    pub fn new(model: VqVae, train: &Split, batch: usize, lr: f32, seed: u64) -> Result<Self> {
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
        self.model.quantizer.start_epoch()?;
        let mut images = 0;
        for s in 0..steps {
            epoch.gather(train, s, &mut host);
            let b = epoch.batch(s).len();
            images += b;
            let x = Tensor::from_slice(&engine, &host, &[b, host.len() / b])?;
            let f = self.train_step(&x)?;
            let vq = &f.vq;
            for (row, v) in [&f.loss, &f.mse, &vq.codebook_loss, &vq.commitment_loss]
                .into_iter()
                .enumerate()
            {
                log.record(row, s, v.value())?;
            }
            engine.flush()?;
            progress(s + 1, steps);
        }
        let m = log.means("VQ-VAE training loss", self.step - steps as u64)?;
        let health = self.model.quantizer.epoch_stats()?;
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
            images_per_second: images as f64 / start.elapsed().as_secs_f64(),
        })
    }

    fn meta(&self) -> Vec<(String, String)> {
        let mut m = self.model.config.describe();
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
        model: VqVae,
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
