//! VQ-VAE (van den Oord et al. 2017): conv encoder → nearest-code quantiser → conv decoder,
//! trained on MSE + codebook + commitment losses; code maps for a prior. Tests: `tests/vqvae.rs`.

use super::vq_nets::{Decoder, Encoder, NetConfig};
use crate::data::Split;
use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::io::{self, Meta};
use crate::kernels::{elementwise as ew, layout};
use crate::nn::Module;
use crate::nn::vq::{CodebookStats, VectorQuantizer, VqConfig, VqOutput};
use crate::optim::{Batch, StepInfo, Terms, TrainConfig, Trainable};
use crate::tape::{Tape, Var};
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
            odd: false,
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

/// What a VQ model gives its training objective ([`VqTraining`]) and the examples: the
/// one-level [`VqVae`] and VQ-VAE-2.
pub trait VqModel: Module {
    fn engine(&self) -> &Engine;
    /// The quantisers, coarsest first.
    fn quantizers(&self) -> Vec<&VectorQuantizer>;
    /// x: [B, C·H·W] pixels in [0, 1] → reconstruction, codes and losses (MSE scaled by
    /// 1 / `data_variance` in the loss, as in the paper's reference code).
    fn forward(&self, tape: &Tape, x: &Tensor, data_variance: f32) -> Result<VqForward>;
    /// Checkpoint metadata describing the architecture.
    fn describe(&self) -> Vec<(String, String)>;

    /// Writes the model alone (no optimizer state) atomically.
    fn save(&self, path: &Path) -> Result<()> {
        let meta: Meta = self.describe().into_iter().collect();
        io::save_module(path, self.as_module(), &meta)
    }

    /// Overwrites this model's tensors from a checkpoint saved by [`VqModel::save`] or by a
    /// trainer, after checking its architecture metadata.
    fn restore(&self, path: &Path) -> Result<()> {
        io::load_module(path, self.as_module(), &self.describe()).map(drop)
    }

    /// The model as a [`Module`].
    fn as_module(&self) -> &dyn Module;
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

    /// The encoder's continuous outputs z_e `[B, D, h, w]` of images `[B, C·H·W]`, before
    /// quantisation (evaluation mode): points between which a latent explorer can move.
    pub fn encode_continuous(&self, x: &Tensor) -> Result<Tensor> {
        let [c, h, w] = self.config.image;
        let b = x.shape()[0];
        x.expect_shape("VqVae::encode_continuous", &[b, c * h * w])?;
        let tape = Tape::no_grad(&self.engine);
        let z = self
            .encoder
            .forward(&tape.input(&x.reshape(&[b, c, h, w])?))?;
        Ok(z.value().clone())
    }

    /// Images `[B, C, H, W]` in [0, 1] from continuous latents z_e `[B, D, h, w]`: each vector
    /// replaced by its nearest code, then decoded (evaluation mode: the codebook is not
    /// updated). At z_e of an image this is [`VqVae::reconstruct`] of it.
    pub fn decode_continuous(&self, z: &Tensor) -> Result<Tensor> {
        let (h, w) = self.config.latent_size();
        let b = z.shape()[0];
        z.expect_shape("VqVae::decode_continuous", &[b, self.config.vq.dim, h, w])?;
        let was = self.training();
        self.set_training(false);
        let tape = Tape::no_grad(&self.engine);
        let y = self
            .quantizer
            .forward(&tape.input(z))
            .and_then(|q| self.decoder.forward(&q.z_q));
        self.set_training(was);
        ew::clamp(y?.value(), 0.0, 1.0)
    }

    /// Reconstructions [B, C, H, W] in [0, 1] of images [B, C·H·W] (evaluation mode).
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        self.decode_codes(&self.encode_codes(x)?)
    }

    /// A model saved by [`VqModel::save`] or by a trainer's checkpoint; its architecture must
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

    fn as_module(&self) -> &dyn Module {
        self
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
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.encoder, &self.quantizer, &self.decoder]
    }
}

/// A VQ model with its objective: the MSE over the training pixels' variance plus every
/// quantiser's codebook and commitment losses.
pub struct VqTraining<M: VqModel> {
    pub model: M,
    /// Variance of the training pixels (the MSE's scale in the loss).
    pub data_variance: f32,
}

impl<M: VqModel> VqTraining<M> {
    /// `model` to be trained on `train` (whose pixel variance scales the MSE).
    pub fn new(model: M, train: &Split) -> VqTraining<M> {
        let px = train.images();
        let n = px.len().max(1) as f64;
        let mean = px.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = px.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        VqTraining {
            model,
            data_variance: var.max(1e-6) as f32,
        }
    }

    /// Every quantiser's health since the epoch began, coarsest first (one readback each).
    pub fn health(&self) -> Result<Vec<CodebookStats>> {
        let q = self.model.quantizers();
        q.iter().map(|q| q.epoch_stats()).collect()
    }

    /// The trainer's configuration: Adam at `lr`, the last partial batch dropped.
    pub fn config(batch: usize, lr: f64, seed: u64, data: impl Into<String>) -> TrainConfig {
        TrainConfig {
            drop_last: true,
            name: "vq".into(),
            ..TrainConfig::adam(batch, lr, seed, data)
        }
    }
}

impl<M: VqModel> Module for VqTraining<M> {
    fn children(&self) -> Vec<&dyn Module> {
        vec![self.model.as_module()]
    }
}

impl<M: VqModel> Trainable for VqTraining<M> {
    fn engine(&self) -> &Engine {
        self.model.engine()
    }

    fn describe(&self) -> Vec<(String, String)> {
        self.model.describe()
    }

    fn start_epoch(&self) -> Result<()> {
        self.model
            .quantizers()
            .iter()
            .try_for_each(|q| q.start_epoch())
    }

    /// `loss`, `mse`, `codebook` and `commitment`.
    fn losses(&self, tape: &Tape, batch: &Batch, _at: &StepInfo) -> Result<Terms> {
        let f = self.model.forward(tape, &batch.x, self.data_variance)?;
        Ok(vec![
            ("loss", f.loss),
            ("mse", f.mse),
            ("codebook", f.codebook_loss),
            ("commitment", f.commitment_loss),
        ])
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
    let progress = crate::io::Progress::new("evaluating", split.len() as u64, "img");
    for start in (0..split.len()).step_by(batch) {
        progress.set(start as u64);
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
    let progress = crate::io::Progress::new("encoding", split.len() as u64, "img");
    for start in (0..split.len()).step_by(batch) {
        progress.set(start as u64);
        let n = batch.min(split.len() - start);
        let host = &split.images()[start * pixels..(start + n) * pixels];
        let x = Tensor::from_slice(engine, host, &[n, pixels])?;
        out.extend(model.encode_codes(&x)?.to_vec::<u32>()?);
    }
    Ok(out)
}
