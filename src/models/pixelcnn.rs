//! The gated PixelCNN over maps of discrete codes (van den Oord et al. 2016), conditioned on a
//! class and/or a spatial map, with batched autoregressive sampling on the GPU. Tests: `tests/pixelcnn.rs`.

use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::kernels::categorical;
use crate::kernels::masked_conv::{Mask, Taps};
use crate::kernels::{layout, random};
use crate::nn::{
    Condition, GatedBlock, GatedBlockConfig, Linear, MaskedConv2d, Module, layer_seed,
};
use crate::tape::{Tape, Var};

/// Sizes of a [`PixelCnn`].
#[derive(Clone, Copy, Debug)]
pub struct PixelCnnConfig {
    /// K: codes per position (the logits per position).
    pub codes: usize,
    /// Channels p of both stacks.
    pub channels: usize,
    /// Gated blocks after the first one (mask A); all of mask B.
    pub blocks: usize,
    /// Odd kernel size of the gated blocks.
    pub kernel: usize,
    /// Width of the 1×1 layer before the logits.
    pub hidden: usize,
    /// Classes of the class conditioning (0: none).
    pub classes: usize,
    /// Channels and odd kernel size of the spatial conditioning map's convolution (None: none).
    pub spatial: Option<(usize, usize)>,
}

impl Default for PixelCnnConfig {
    /// A prior for VQ-VAE code maps: K = 512, 64 channels, 1 + 6 blocks of kernel 3.
    fn default() -> Self {
        PixelCnnConfig {
            codes: 512,
            channels: 64,
            blocks: 6,
            kernel: 3,
            hidden: 256,
            classes: 0,
            spatial: None,
        }
    }
}

/// What a [`PixelCnn`] is conditioned on, as it was built to be: class labels u32 `[B]` and/or a
/// map f32 [B, Cs, H, W] of the code map's size.
#[derive(Clone, Default)]
pub struct Conditioning {
    pub labels: Option<Tensor>,
    pub map: Option<Tensor>,
}

/// Code map [B, H, W] -> one-hot [B, K, H, W] -> 1×1 embedding -> a mask-A gated block and
/// `blocks` mask-B ones -> ReLU, 1×1, ReLU, 1×1 -> logits [B·H·W, K], one row per position in
/// raster order. Position i's logits depend only on the codes before i.
pub struct PixelCnn {
    pub config: PixelCnnConfig,
    embed: MaskedConv2d,
    blocks: Vec<GatedBlock>,
    head: Linear,
    out: Linear,
}

impl PixelCnn {
    pub fn new(engine: &Engine, config: PixelCnnConfig, seed: u64) -> Result<PixelCnn> {
        let c = config;
        let s = |i: u64| layer_seed(seed, i);
        let embed = MaskedConv2d::new(
            engine,
            "pixelcnn.embed",
            c.codes,
            c.channels,
            Taps::pointwise(),
            s(1),
        )?;
        let blocks = (0..=c.blocks)
            .map(|i| {
                let block = GatedBlockConfig {
                    cin: c.channels,
                    channels: c.channels,
                    kernel: c.kernel,
                    mask: if i == 0 { Mask::A } else { Mask::B },
                    classes: c.classes,
                    spatial: c.spatial,
                };
                GatedBlock::new(
                    engine,
                    &format!("pixelcnn.block{i}"),
                    block,
                    s(10 + i as u64),
                )
            })
            .collect::<Result<_>>()?;
        Ok(PixelCnn {
            config,
            embed,
            blocks,
            head: Linear::new(engine, "pixelcnn.head", c.channels, c.hidden, s(2))?,
            out: Linear::new(engine, "pixelcnn.out", c.hidden, c.codes, s(3))?,
        })
    }

    /// The device the prior lives on.
    pub fn engine(&self) -> &Engine {
        self.embed.weight.value().engine()
    }

    /// The blocks' conditioning terms for a batch of `b` maps of `h`×`w` codes, on `tape`.
    pub fn condition(
        &self,
        tape: &Tape,
        cond: &Conditioning,
        b: usize,
        (h, w): (usize, usize),
    ) -> Result<Vec<Option<Var>>> {
        let op = "PixelCnn::condition";
        let missing = |what: &str, given: bool| {
            let why = match given {
                true => format!("a {what} was given to a model built without one"),
                false => format!("the model is conditioned on a {what}; none was given"),
            };
            Err(Error::bad(op, why))
        };
        let class = match (&cond.labels, self.config.classes) {
            (None, 0) => None,
            (Some(l), k) if k > 0 => {
                l.expect_shape(op, &[b])?;
                Some(tape.input(&categorical::one_hot(l, k)?))
            }
            (l, _) => return missing("class label", l.is_some()),
        };
        let spatial = match (&cond.map, self.config.spatial) {
            (None, None) => None,
            (Some(m), Some((cs, _))) => {
                m.expect_shape(op, &[b, cs, h, w])?;
                Some(tape.input(m))
            }
            (m, _) => return missing("spatial map", m.is_some()),
        };
        let given = Condition {
            class: class.as_ref(),
            spatial: spatial.as_ref(),
        };
        self.blocks
            .iter()
            .map(|blk| blk.condition(&given))
            .collect()
    }

    /// Logits [B·H·W, K] of a one-hot code map `map` [B, K, H, W] (any values: only the
    /// positions before each row's are read), with the terms of [`PixelCnn::condition`].
    pub fn logits(&self, map: &Var, terms: &[Option<Var>]) -> Result<Var> {
        if terms.len() != self.blocks.len() {
            return Err(Error::bad(
                "PixelCnn::logits",
                "one conditioning term per block",
            ));
        }
        let x = self.embed.forward(map)?;
        let (mut v, mut h) = (x.clone(), x);
        for (block, term) in self.blocks.iter().zip(terms) {
            (v, h) = block.forward(&v, &h, term.as_ref())?;
        }
        let rows = h.relu()?.channels_last()?;
        self.out.forward(&self.head.forward(&rows, true)?, false)
    }

    /// Mean cross entropy per code in nats, shape `[1]`, of codes u32 `[B, H, W]` (NLL / ln 2 is
    /// bits per code, see [`bits`]).
    pub fn loss(&self, tape: &Tape, codes: &Tensor, cond: &Conditioning) -> Result<Var> {
        let &[b, h, w] = codes.shape() else {
            return Err(Error::bad(
                "PixelCnn::loss",
                format!("codes must be [B, H, W], got {:?}", codes.shape()),
            ));
        };
        codes.expect_dtype("PixelCnn::loss", DType::U32)?;
        let terms = self.condition(tape, cond, b, (h, w))?;
        let map = tape.input(&categorical::one_hot(codes, self.config.codes)?);
        let logits = self.logits(&map, &terms)?;
        logits.cross_entropy(&codes.reshape(&[b * h * w])?)?.mean()
    }

    /// The NLL of codes u32 [B, H, W] in bits per code, evaluated without gradients (one
    /// readback).
    pub fn nll_bits(&self, codes: &Tensor, cond: &Conditioning) -> Result<f32> {
        let tape = Tape::no_grad(self.embed.weight.value().engine());
        let nats = self.loss(&tape, codes, cond)?.value().to_vec::<f32>()?;
        Ok(bits(nats[0]))
    }

    /// `n` code maps of `h`×`w` drawn autoregressively on the GPU: position by position in
    /// raster order, the network runs on the codes drawn so far and
    /// `categorical::sample_step` draws every image's code at that position (softmax of the
    /// logits / `temperature`, Philox uniforms from `seed`) and writes it into the code map and
    /// the one-hot map the next step reads. No readback: the result is u32 [n, h, w] on the GPU.
    /// Row y's logits read no row below it (every tap has dy ≤ 0), so the steps of row y run
    /// the network on rows 0..=y only: exact, and about half the work of whole maps.
    pub fn sample(
        &self,
        cond: &Conditioning,
        n: usize,
        (h, w): (usize, usize),
        seed: u64,
        temperature: f32,
    ) -> Result<Tensor> {
        let e = self.embed.weight.value().engine();
        let k = self.config.codes;
        let codes = Tensor::zeros(e, &[n, h, w], DType::U32)?;
        let map = Tensor::zeros(e, &[n, k, h, w], DType::F32)?;
        // One uniform per image and position, drawn at once: step i reads u[i·n..(i + 1)·n].
        let u = random::uniform(e, &[h * w, n], seed, 0)?;
        // The conditioning terms do not change from step to step: computed once on whole maps
        // (a spatial condition's convolution reads below), then cropped per row.
        let terms: Vec<Option<Tensor>> = self
            .condition(&Tape::no_grad(e), cond, n, (h, w))?
            .into_iter()
            .map(|t| t.map(|v| v.value().clone()))
            .collect();
        let rows_of = |t: &Tensor, y: usize| match t.shape().len() == 4 && y + 1 < h {
            true => layout::slice(t, 2, 0..y + 1),
            false => Ok(t.clone()),
        };
        let progress = crate::io::Progress::new("sampling", (h * w) as u64, "positions");
        for y in 0..h {
            let cropped = terms
                .iter()
                .map(|t| t.as_ref().map(|t| rows_of(t, y)).transpose())
                .collect::<Result<Vec<_>>>()?;
            for x in 0..w {
                let tape = Tape::no_grad(e);
                let vars: Vec<Option<Var>> = cropped
                    .iter()
                    .map(|t| t.as_ref().map(|t| tape.input(t)))
                    .collect();
                let logits = self.logits(&tape.input(&rows_of(&map, y)?), &vars)?;
                let pos = y * w + x;
                categorical::sample_step(
                    logits.value(),
                    &u,
                    pos * n,
                    pos,
                    temperature,
                    &codes,
                    &map,
                )?;
                engine_flush_and_show(e, &progress, pos + 1)?;
            }
        }
        Ok(codes)
    }
}

/// Submits the recorded positions and moves the bar (no readback).
fn engine_flush_and_show(e: &Engine, progress: &crate::io::Progress, done: usize) -> Result<()> {
    if progress.is_live() {
        e.flush()?;
        progress.set(done as u64);
    }
    Ok(())
}

/// Nats to bits (per code).
pub fn bits(nats: f32) -> f32 {
    nats / std::f32::consts::LN_2
}

impl Module for PixelCnn {
    fn children(&self) -> Vec<&dyn Module> {
        let mut c: Vec<&dyn Module> = vec![&self.embed];
        c.extend(self.blocks.iter().map(|b| b as &dyn Module));
        c.extend([&self.head as &dyn Module, &self.out]);
        c
    }
}
