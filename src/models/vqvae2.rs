//! VQ-VAE-2 (Razavi et al. 2019): bottom codes at 1/2^s of the image size, top codes at half
//! the bottom's (rounded up), the bottom quantised conditioned on the decoded top (Fig. 2a,
//! Algorithm 1). Tests: `tests/vqvae2.rs`.

use super::pixelcnn::{Conditioning, PixelCnn};
use super::vq_nets::{Decoder, Encoder, NetConfig, upsample};
use super::vqvae::{VqForward, VqModel};
use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::kernels::{elementwise as ew, layout};
use crate::nn::vq::{VectorQuantizer, VqConfig};
use crate::nn::{Conv2d, ConvTranspose2d, Module, layer_seed};
use crate::tape::{Tape, Var};
use std::path::Path;

/// Sizes of a [`VqVae2`]: image `[C, H, W]` with H, W divisible by 2^`bottom_stages`; both
/// levels share D.
#[derive(Clone, Copy, Debug)]
pub struct VqVae2Config {
    pub image: [usize; 3],
    pub hidden: usize,
    pub res_hidden: usize,
    pub res_blocks: usize,
    /// Stride-2 stages from the image to the bottom codes (2: 7×7 bottom and 4×4 top codes on
    /// 28×28 images; 1: 14×14 and 7×7).
    pub bottom_stages: usize,
    /// Top level (⌈h/2⌉ × ⌈w/2⌉ of the bottom's h × w) and bottom level quantisers.
    pub top: VqConfig,
    pub bottom: VqConfig,
}

impl Default for VqVae2Config {
    /// Fashion-MNIST: 4×4 top codes with K = 256 and 7×7 bottom codes with K = 16, D = 32.
    /// The small bottom codebook leaves the shape to the top and little for the bottom prior
    /// to get wrong: with 14×14 bottom codes of K = 256 the bottom prior, undertrained within
    /// the run's time, drew bottoms that decoded worse than the mean image.
    fn default() -> Self {
        let vq = VqConfig {
            codes: 256,
            dim: 32,
            ..Default::default()
        };
        VqVae2Config {
            image: [1, 28, 28],
            hidden: 32,
            res_hidden: 16,
            res_blocks: 1,
            bottom_stages: 2,
            top: vq,
            bottom: VqConfig { codes: 16, ..vq },
        }
    }
}

impl VqVae2Config {
    /// (top, bottom) code grids.
    pub fn grids(&self) -> ((usize, usize), (usize, usize)) {
        let [_, h, w] = self.image;
        let (bh, bw) = (h >> self.bottom_stages, w >> self.bottom_stages);
        ((bh.div_ceil(2), bw.div_ceil(2)), (bh, bw))
    }

    /// Whether the bottom grid is odd, so that the top level halves it rounding up.
    fn odd(&self) -> bool {
        let (_, (bh, _)) = self.grids();
        bh % 2 == 1
    }

    pub fn describe(&self) -> Vec<(String, String)> {
        let v = |k: &str, x: String| (k.to_string(), x);
        vec![
            v("model", "vqvae2".into()),
            v("image", format!("{:?}", self.image)),
            v("hidden", self.hidden.to_string()),
            v("res_hidden", self.res_hidden.to_string()),
            v("res_blocks", self.res_blocks.to_string()),
            v("bottom_stages", self.bottom_stages.to_string()),
            v("top_codes", self.top.codes.to_string()),
            v("bottom_codes", self.bottom.codes.to_string()),
            v("dim", self.top.dim.to_string()),
            v("ema", self.top.ema.is_some().to_string()),
        ]
    }

    /// An encoder or decoder of `stages` stride-2 stages, the last one rounding up with `odd`.
    fn net(&self, (outer, inner): (usize, usize), stages: usize, odd: bool) -> NetConfig {
        NetConfig {
            outer,
            inner,
            hidden: self.hidden,
            res_hidden: self.res_hidden,
            res_blocks: self.res_blocks,
            stages,
            odd,
        }
    }
}

/// x → bottom encoder (28→7 at the defaults, `hidden` channels) → top encoder (7→4, D) → top
/// quantiser; top decoder (4→7, D) of z_q^top joins the bottom features, a 1×1 convolution gives the
/// bottom's z_e (7×7, D) → bottom quantiser; the decoder reads [upsample(z_q^top), z_q^bottom].
pub struct VqVae2 {
    pub config: VqVae2Config,
    engine: Engine,
    enc_bottom: Encoder,
    enc_top: Encoder,
    pub top: VectorQuantizer,
    dec_top: Decoder,
    pre_bottom: Conv2d,
    pub bottom: VectorQuantizer,
    up_top: ConvTranspose2d,
    decoder: Decoder,
}

impl VqVae2 {
    pub fn new(engine: &Engine, config: VqVae2Config, seed: u64) -> Result<VqVae2> {
        let [c, h, w] = config.image;
        let d = config.top.dim;
        let stages = config.bottom_stages;
        let f = 1 << stages.min(16);
        let (_, (bh, bw)) = config.grids();
        let fits = stages >= 1 && h % f == 0 && w % f == 0 && bh >= 2 && bw >= 2;
        if !fits || bh % 2 != bw % 2 || config.bottom.dim != d {
            let why = format!(
                "needs H, W divisible by 2^bottom_stages (at least 1 stage) into a bottom grid of \
                 at least 2×2, both sides even or both odd, and one code dimension: {config:?}"
            );
            return Err(Error::bad("VqVae2::new", why));
        }
        let s = |i: u64| layer_seed(seed, i);
        let hid = config.hidden;
        let odd = config.odd();
        Ok(VqVae2 {
            config,
            engine: engine.clone(),
            enc_bottom: Encoder::new(
                engine,
                "enc_bottom",
                config.net((c, hid), stages, false),
                s(1),
            )?,
            enc_top: Encoder::new(engine, "enc_top", config.net((hid, d), 1, odd), s(2))?,
            top: VectorQuantizer::new(
                engine,
                "vq_top",
                VqConfig {
                    seed: s(3),
                    ..config.top
                },
            )?,
            dec_top: Decoder::new(engine, "dec_top", config.net((d, d), 1, odd), s(4))?,
            pre_bottom: Conv2d::new(engine, "pre_bottom", hid + d, d, 1, 1, 0, s(5))?,
            bottom: VectorQuantizer::new(
                engine,
                "vq_bottom",
                VqConfig {
                    seed: s(6),
                    ..config.bottom
                },
            )?,
            up_top: upsample(engine, "up_top", (d, d), odd, s(7))?,
            decoder: Decoder::new(
                engine,
                "decoder",
                config.net((c, 2 * d), stages, false),
                s(8),
            )?,
        })
    }

    pub fn load(engine: &Engine, config: VqVae2Config, path: &Path) -> Result<VqVae2> {
        let model = VqVae2::new(engine, config, 0)?;
        model.restore(path)?;
        Ok(model)
    }

    /// Pixel means from quantised maps: z_q^top `[B, D, th, tw]` and z_q^bottom `[B, D, bh, bw]`
    /// (the grids of [`VqVae2Config::grids`]).
    fn decode(&self, top: &Var, bottom: &Var) -> Result<Var> {
        let up = self.up_top.forward(top)?;
        self.decoder.forward(&Var::concat(&[&up, bottom], 1)?)
    }

    /// Code maps (top u32 `[B, th, tw]`, bottom u32 `[B, bh, bw]`) of images [B, C·H·W]
    /// (evaluation mode, no gradients).
    pub fn encode_codes(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let was = self.top.is_training();
        self.set_training(false);
        let tape = Tape::no_grad(&self.engine);
        let out = self.forward(&tape, x, 1.0);
        self.set_training(was);
        let mut f = out?;
        let bottom = f.indices.pop().expect("two levels");
        Ok((f.indices.pop().expect("two levels"), bottom))
    }

    /// z_q [B, D, h, w] of a code map u32 [B, h, w] under `vq`'s codebook (a constant).
    fn lookup(&self, vq: &VectorQuantizer, codes: &Tensor, tape: &Tape) -> Result<Var> {
        codes.expect_dtype("VqVae2 codes", DType::U32)?;
        let &[b, h, w] = codes.shape() else {
            let why = format!("code maps are [B, h, w], got {:?}", codes.shape());
            return Err(Error::bad("VqVae2 codes", why));
        };
        let d = vq.config.dim;
        let rows = layout::gather(vq.codebook.value(), &codes.reshape(&[b * h * w])?)?;
        Ok(tape.input(&layout::to_channels_first(&rows, [b, d, h, w])?))
    }

    /// Images [B, C, H, W] in [0, 1] from top and bottom code maps.
    pub fn decode_codes(&self, top: &Tensor, bottom: &Tensor) -> Result<Tensor> {
        let tape = Tape::no_grad(&self.engine);
        let ((th, tw), (bh, bw)) = self.config.grids();
        let b = top.shape()[0];
        top.expect_shape("VqVae2::decode_codes", &[b, th, tw])?;
        bottom.expect_shape("VqVae2::decode_codes", &[b, bh, bw])?;
        let zt = self.lookup(&self.top, top, &tape)?;
        let zb = self.lookup(&self.bottom, bottom, &tape)?;
        ew::clamp(self.decode(&zt, &zb)?.value(), 0.0, 1.0)
    }

    /// Images from top code maps alone: the bottom codes are drawn from `bottom_prior` given the
    /// top (Razavi et al.'s hierarchy read top-down), then both levels are decoded.
    pub fn decode_from_top(
        &self,
        top: &Tensor,
        bottom_prior: &PixelCnn,
        seed: u64,
        temperature: f32,
    ) -> Result<Tensor> {
        let cond = Conditioning {
            labels: None,
            map: Some(self.top_condition(top)?),
        };
        let (_, grid) = self.config.grids();
        let bottom = bottom_prior.sample(&cond, top.shape()[0], grid, seed, temperature)?;
        self.decode_codes(top, &bottom)
    }

    /// The bottom prior's spatial condition for top code maps u32 `[B, th, tw]`: the model's
    /// own upsampling of z_q^top, `[B, D, bh, bw]` (a constant).
    pub fn top_condition(&self, top: &Tensor) -> Result<Tensor> {
        let tape = Tape::no_grad(&self.engine);
        let zt = self.lookup(&self.top, top, &tape)?;
        Ok(self.up_top.forward(&zt)?.value().clone())
    }
}

impl Module for VqVae2 {
    fn children(&self) -> Vec<&dyn Module> {
        vec![
            &self.enc_bottom,
            &self.enc_top,
            &self.top,
            &self.dec_top,
            &self.pre_bottom,
            &self.bottom,
            &self.up_top,
            &self.decoder,
        ]
    }
}

impl VqModel for VqVae2 {
    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn as_module(&self) -> &dyn Module {
        self
    }

    fn quantizers(&self) -> Vec<&VectorQuantizer> {
        vec![&self.top, &self.bottom]
    }

    /// Razavi et al. Algorithm 1: both levels quantised in one pass, the loss is the MSE plus
    /// both quantisers' codebook and commitment terms.
    fn forward(&self, tape: &Tape, x: &Tensor, data_variance: f32) -> Result<VqForward> {
        let [c, h, w] = self.config.image;
        let b = x.shape()[0];
        if x.numel() != b * c * h * w {
            return Err(Error::ShapeMismatch {
                op: "VqVae2::forward",
                lhs: x.shape().to_vec(),
                rhs: vec![b, c, h, w],
            });
        }
        let xv = tape.input(&x.reshape(&[b, c, h, w])?);
        let hb = self.enc_bottom.forward(&xv)?;
        let top = self.top.forward(&self.enc_top.forward(&hb)?)?;
        let joined = Var::concat(&[&hb, &self.dec_top.forward(&top.z_q)?], 1)?;
        let bottom = self.bottom.forward(&self.pre_bottom.forward(&joined)?)?;
        let recon = self.decode(&top.z_q, &bottom.z_q)?;
        VqForward::new(recon, &xv, vec![top, bottom], data_variance)
    }

    fn describe(&self) -> Vec<(String, String)> {
        self.config.describe()
    }
}

/// Test-set figures of a trained VQ-VAE-2: reconstruction MSE and each level's code usage.
#[derive(Clone, Debug)]
pub struct VqVae2Eval {
    pub mse: f64,
    pub top_usage: f64,
    pub bottom_usage: f64,
}

/// Code maps of a whole split in batches: (top codes, bottom codes), row-major u32.
pub fn extract_codes(
    model: &VqVae2,
    split: &crate::data::Split,
    batch: usize,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let pixels = split.pixels_per_image();
    let (mut top, mut bottom) = (Vec::new(), Vec::new());
    let progress = crate::io::Progress::new("encoding", split.len() as u64, "img");
    for start in (0..split.len()).step_by(batch.max(1)) {
        progress.set(start as u64);
        let n = batch.min(split.len() - start);
        let host = &split.images()[start * pixels..(start + n) * pixels];
        let x = Tensor::from_slice(&model.engine, host, &[n, pixels])?;
        let (t, b) = model.encode_codes(&x)?;
        top.extend(t.to_vec::<u32>()?);
        bottom.extend(b.to_vec::<u32>()?);
    }
    Ok((top, bottom))
}

/// Reconstruction MSE and code usage per level on `split`.
pub fn evaluate(model: &VqVae2, split: &crate::data::Split, batch: usize) -> Result<VqVae2Eval> {
    let pixels = split.pixels_per_image();
    let mut sq = 0.0f64;
    let mut counts = (
        vec![0u32; model.config.top.codes],
        vec![0u32; model.config.bottom.codes],
    );
    let err = |r: &Tensor, x: &[f32]| -> Result<f64> {
        Ok(r.to_vec::<f32>()?
            .iter()
            .zip(x)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum())
    };
    let progress = crate::io::Progress::new("evaluating", split.len() as u64, "img");
    for start in (0..split.len()).step_by(batch.max(1)) {
        progress.set(start as u64);
        let n = batch.min(split.len() - start);
        let host = &split.images()[start * pixels..(start + n) * pixels];
        let x = Tensor::from_slice(&model.engine, host, &[n, pixels])?;
        let (t, b) = model.encode_codes(&x)?;
        sq += err(&model.decode_codes(&t, &b)?, host)?;
        for c in t.to_vec::<u32>()? {
            counts.0[c as usize] += 1;
        }
        for c in b.to_vec::<u32>()? {
            counts.1[c as usize] += 1;
        }
    }
    let total = (split.len() * pixels).max(1) as f64;
    Ok(VqVae2Eval {
        mse: sq / total,
        top_usage: crate::nn::vq::usage(&counts.0),
        bottom_usage: crate::nn::vq::usage(&counts.1),
    })
}
