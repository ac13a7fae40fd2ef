//! The convolutional encoder and decoder of the VQ-VAE family (van den Oord et al. 2017, §4.1):
//! strided 4×4 convolutions, a 3×3 convolution and residual blocks. Tests: `tests/vqvae.rs`.

use crate::engine::{Engine, Result};
use crate::nn::{Conv2d, ConvTranspose2d, Module, layer_seed};
use crate::tape::{Param, Var};

/// Seeds for the layers of one network, derived from a base seed (golden-ratio stride).
fn seeds(seed: u64) -> impl FnMut() -> u64 {
    let mut i = 0u64;
    move || {
        i += 1;
        layer_seed(seed, i)
    }
}

/// x + conv1×1(ReLU(conv3×3(ReLU(x)))): channels → hidden → channels (shape-preserving).
pub struct ResBlock {
    conv3: Conv2d,
    conv1: Conv2d,
}

impl ResBlock {
    pub fn new(
        engine: &Engine,
        name: &str,
        channels: usize,
        hidden: usize,
        seed: u64,
    ) -> Result<ResBlock> {
        let mut s = seeds(seed);
        Ok(ResBlock {
            conv3: Conv2d::new(
                engine,
                &format!("{name}.conv3"),
                channels,
                hidden,
                3,
                1,
                1,
                s(),
            )?,
            conv1: Conv2d::new(
                engine,
                &format!("{name}.conv1"),
                hidden,
                channels,
                1,
                1,
                0,
                s(),
            )?,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        let h = self.conv3.forward(&x.relu()?)?.relu()?;
        x.add(&self.conv1.forward(&h)?)
    }
}

impl Module for ResBlock {
    fn params(&self) -> Vec<Param> {
        [self.conv3.params(), self.conv1.params()].concat()
    }
}

/// `res_blocks` residual blocks of `hidden` channels, named `{name}.res{i}`.
struct ResStack(Vec<ResBlock>);

impl ResStack {
    fn new(
        engine: &Engine,
        name: &str,
        c: &NetConfig,
        seed: &mut impl FnMut() -> u64,
    ) -> Result<ResStack> {
        let blocks = (0..c.res_blocks)
            .map(|i| {
                let n = format!("{name}.res{i}");
                ResBlock::new(engine, &n, c.hidden, c.res_hidden, seed())
            })
            .collect::<Result<_>>()?;
        Ok(ResStack(blocks))
    }

    fn forward(&self, x: &Var) -> Result<Var> {
        self.0.iter().try_fold(x.clone(), |h, r| r.forward(&h))
    }

    fn params(&self) -> Vec<Param> {
        self.0.iter().flat_map(|r| r.params()).collect()
    }
}

/// Sizes of an encoder or decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Channels of the image side (encoder input, decoder output).
    pub outer: usize,
    /// Channels of the latent side (encoder output, decoder input).
    pub inner: usize,
    /// Channels inside the network.
    pub hidden: usize,
    /// Channels inside each residual block.
    pub res_hidden: usize,
    pub res_blocks: usize,
    /// Stride-2 stages: the spatial size shrinks (encoder) or grows (decoder) by 2^stages.
    pub stages: usize,
    /// The innermost stage halves an odd size, rounding up (7 → 4), and the decoder's matching
    /// stage gives it back (4 → 7); otherwise every stage halves or doubles exactly.
    pub odd: bool,
}

/// Padding and output padding of the innermost 4×4 stride-2 stage: padding 2 makes the
/// convolution give ⌈n/2⌉ from an odd n, and the transposed one (output padding 1) 2m − 1.
fn stage_padding(odd: bool) -> (usize, usize) {
    if odd { (2, 1) } else { (1, 0) }
}

/// The 4×4 stride-2 transposed convolution that undoes one encoder stage: 2n, or 2n − 1 with
/// `odd` (see [`NetConfig::odd`]).
pub fn upsample(
    engine: &Engine,
    name: &str,
    (cin, cout): (usize, usize),
    odd: bool,
    seed: u64,
) -> Result<ConvTranspose2d> {
    let (pad, out_pad) = stage_padding(odd);
    ConvTranspose2d::new(engine, name, cin, cout, 4, 2, pad, out_pad, seed)
}

/// Image [B, outer, H, W] -> [B, inner, H/2^s, W/2^s] (the last halving rounded up with `odd`):
/// `stages` × (conv 4×4 stride 2, ReLU),
/// conv 3×3, residual blocks, ReLU, conv 1×1 to the latent channels.
pub struct Encoder {
    downs: Vec<Conv2d>,
    conv: Conv2d,
    res: ResStack,
    out: Conv2d,
}

impl Encoder {
    pub fn new(engine: &Engine, name: &str, c: NetConfig, seed: u64) -> Result<Encoder> {
        let mut s = seeds(seed);
        let mut downs = Vec::new();
        for i in 0..c.stages {
            let cin = if i == 0 { c.outer } else { c.hidden };
            let n = format!("{name}.down{i}");
            let (pad, _) = stage_padding(c.odd && i + 1 == c.stages);
            downs.push(Conv2d::new(engine, &n, cin, c.hidden, 4, 2, pad, s())?);
        }
        let first = if c.stages == 0 { c.outer } else { c.hidden };
        let res = ResStack::new(engine, name, &c, &mut s)?;
        Ok(Encoder {
            downs,
            conv: Conv2d::new(
                engine,
                &format!("{name}.conv"),
                first,
                c.hidden,
                3,
                1,
                1,
                s(),
            )?,
            res,
            out: Conv2d::new(
                engine,
                &format!("{name}.out"),
                c.hidden,
                c.inner,
                1,
                1,
                0,
                s(),
            )?,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for d in &self.downs {
            h = d.forward(&h)?.relu()?;
        }
        h = self.conv.forward(&h)?;
        h = self.res.forward(&h)?;
        self.out.forward(&h.relu()?)
    }
}

impl Module for Encoder {
    fn params(&self) -> Vec<Param> {
        let mut p: Vec<Param> = self.downs.iter().flat_map(|d| d.params()).collect();
        p.extend(self.conv.params());
        p.extend(self.res.params());
        p.extend(self.out.params());
        p
    }
}

/// [B, inner, h, w] -> [B, outer, h·2^s, w·2^s]: conv 3×3, residual blocks, ReLU, then
/// `stages` × transposed conv 4×4 stride 2 (ReLU between them); the last one gives the image
/// side's channels (no activation: logits or means, as the loss wants).
pub struct Decoder {
    conv: Conv2d,
    res: ResStack,
    ups: Vec<ConvTranspose2d>,
    /// With no stages, a 1×1 convolution maps to the outer channels instead.
    out: Option<Conv2d>,
}

impl Decoder {
    pub fn new(engine: &Engine, name: &str, c: NetConfig, seed: u64) -> Result<Decoder> {
        let mut s = seeds(seed);
        let conv = Conv2d::new(
            engine,
            &format!("{name}.conv"),
            c.inner,
            c.hidden,
            3,
            1,
            1,
            s(),
        )?;
        let res = ResStack::new(engine, name, &c, &mut s)?;
        let mut ups = Vec::new();
        for i in 0..c.stages {
            let cout = if i + 1 == c.stages { c.outer } else { c.hidden };
            let n = format!("{name}.up{i}");
            ups.push(upsample(
                engine,
                &n,
                (c.hidden, cout),
                c.odd && i == 0,
                s(),
            )?);
        }
        let out = match c.stages {
            0 => Some(Conv2d::new(
                engine,
                &format!("{name}.out"),
                c.hidden,
                c.outer,
                1,
                1,
                0,
                s(),
            )?),
            _ => None,
        };
        Ok(Decoder {
            conv,
            res,
            ups,
            out,
        })
    }

    pub fn forward(&self, z: &Var) -> Result<Var> {
        let mut h = self.conv.forward(z)?;
        h = self.res.forward(&h)?;
        h = h.relu()?;
        if let Some(out) = &self.out {
            return out.forward(&h);
        }
        let last = self.ups.len() - 1;
        for (i, u) in self.ups.iter().enumerate() {
            h = u.forward(&h)?;
            if i < last {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

impl Module for Decoder {
    fn params(&self) -> Vec<Param> {
        let mut p = self.conv.params();
        p.extend(self.res.params());
        p.extend(self.ups.iter().flat_map(|u| u.params()));
        p.extend(self.out.iter().flat_map(|o| o.params()));
        p
    }
}
