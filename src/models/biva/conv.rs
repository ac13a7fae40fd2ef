//! BIVA's convolutional architecture (Maaløe et al. 2019, §4 and the authors' public code),
//! reduced for a CPU budget: strided 4×4 convolutions with batch norm and residual blocks in
//! both deterministic paths, spatial latents at half and quarter resolution (14×14 and 7×7 on
//! 28×28 images) with a few channels each, and a small dense top latent. Tests:
//! `tests/hierarchy.rs`.

use super::{Biva, Block, Head, Nets, Shape};
use crate::engine::{Engine, Error, Result};
use crate::kernels::elementwise::Unary;
use crate::models::hierarchy::{Dense, Gaussian, Variance};
use crate::models::vq_nets::ResBlock;
use crate::nn::{BatchNorm, Conv2d, ConvTranspose2d, Linear, Module, layer_seed};
use crate::tape::Var;

/// Sizes of the convolutional BIVA.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvBivaConfig {
    /// Side of the square single-channel images (a multiple of 4).
    pub side: usize,
    /// Channels of the deterministic feature maps (both directions) at side/2 and at side/4.
    pub channels: [usize; 2],
    /// Channels of the spatial latents: level 1 at side/2 × side/2 (BU and TD each), level 2
    /// at side/4 × side/4.
    pub latent_channels: [usize; 2],
    /// Units of the dense layers under the top latent.
    pub top_hidden: usize,
    /// Units of the dense top latent z_3.
    pub top_latent: usize,
    pub batchnorm: bool,
    /// How the Gaussian heads make log σ².
    pub variance: Variance,
}

impl Default for ConvBivaConfig {
    /// The authors' MNIST model has 64 filters in every block and three blocks per level;
    /// 16 channels at 14×14, 32 at 7×7 and one residual block per level keep an epoch near
    /// 5 minutes on a shared 2-core CPU adapter (32 at both took 2.5 times as long) while
    /// keeping the spatial structure. Widths that are multiples of 8 (4 latent channels, so
    /// that a head's μ and log σ² make 8) let every GEMM take the wide-load matmul kernel.
    fn default() -> Self {
        ConvBivaConfig {
            side: 28,
            channels: [16, 32],
            latent_channels: [4, 4],
            top_hidden: 256,
            top_latent: 16,
            batchnorm: true,
            variance: Variance::default(),
        }
    }
}

/// The storage-binding budget a pass's largest buffer is sized against: below lavapipe's and
/// WebGPU's 128 MiB, with room to spare.
const PASS_BYTES: usize = 96 << 20;

impl ConvBivaConfig {
    fn check(&self) -> Result<()> {
        if self.side < 4 || !self.side.is_multiple_of(4) {
            return Err(Error::bad(
                "ConvBivaConfig",
                format!(
                    "the image side must be a positive multiple of 4 (two halvings), got {}",
                    self.side
                ),
            ));
        }
        let widths = [self.top_hidden, self.top_latent];
        let channels = self.channels.iter().chain(&self.latent_channels);
        if widths.iter().chain(channels).any(|&w| w == 0) {
            return Err(Error::bad(
                "ConvBivaConfig",
                "every width must be at least 1",
            ));
        }
        Ok(())
    }

    /// Rows per evaluation pass: the largest buffer of a pass is the column matrix of q(z_1^TD)'s
    /// 3×3 convolution over [t_1, d_1] (2·channels at side/2) or of q(z_2^TD)'s at side/4.
    fn rows_per_pass(&self) -> usize {
        let (half, quarter) = (self.side / 2, self.side / 4);
        let [c1, c2] = self.channels;
        let floats = 18 * (c1 * half * half).max(c2 * quarter * quarter);
        (PASS_BYTES / (4 * floats)).max(1)
    }
}

/// The strided convolution that halves or doubles a feature map.
enum Resize {
    Down(Conv2d),
    Up(ConvTranspose2d),
}

/// Strided 4×4 convolution (down or up) → batch norm → leaky ReLU → residual block.
struct ConvBlock {
    /// The image side when the block reads flat pixels `[N, side²]`.
    image: Option<usize>,
    resize: Resize,
    bn: Option<BatchNorm>,
    res: ResBlock,
}

impl ConvBlock {
    fn new(
        engine: &Engine,
        name: &str,
        (cin, cout, up): (usize, usize, bool),
        batchnorm: bool,
        seed: &mut impl FnMut() -> u64,
    ) -> Result<ConvBlock> {
        let conv = format!("{name}.conv");
        let resize = match up {
            false => Resize::Down(Conv2d::new(engine, &conv, cin, cout, 4, 2, 1, seed())?),
            true => Resize::Up(ConvTranspose2d::new(
                engine,
                &conv,
                cin,
                cout,
                4,
                2,
                1,
                0,
                seed(),
            )?),
        };
        Ok(ConvBlock {
            image: None,
            resize,
            bn: batchnorm
                .then(|| BatchNorm::new(engine, &format!("{name}.bn"), cout))
                .transpose()?,
            res: ResBlock::new(
                engine,
                &format!("{name}.res"),
                cout,
                (cout / 2).max(1),
                seed(),
            )?,
        })
    }
}

impl Block for ConvBlock {
    /// `[N, Cin, H, W]` (or `[N, side²]`) -> `[N, Cout, 2H, 2W]` up or `[N, Cout, H/2, W/2]` down.
    fn forward(&self, x: &Var) -> Result<Var> {
        let x = match self.image {
            Some(side) => x.reshape(&[x.shape()[0], 1, side, side])?,
            None => x.clone(),
        };
        let mut h = match &self.resize {
            Resize::Down(c) => c.forward(&x)?,
            Resize::Up(c) => c.forward(&x)?,
        };
        if let Some(bn) = &self.bn {
            h = bn.forward(&h)?;
        }
        self.res.forward(&h.unary(Unary::LeakyRelu)?)
    }
}

impl Module for ConvBlock {
    fn children(&self) -> Vec<&dyn Module> {
        let mut c: Vec<&dyn Module> = vec![match &self.resize {
            Resize::Down(conv) => conv,
            Resize::Up(conv) => conv,
        }];
        if let Some(bn) = &self.bn {
            c.push(bn);
        }
        c.push(&self.res);
        c
    }
}

/// The dense top of the bottom-up path: `[N, C, H, W]` flattened, then two dense layers.
struct Flatten(Dense);

impl Block for Flatten {
    fn forward(&self, x: &Var) -> Result<Var> {
        let n = x.shape()[0];
        self.0.forward(&x.reshape(&[n, x.value().numel() / n])?)
    }
}

impl Module for Flatten {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.0]
    }
}

/// The top of the top-down path: z_3 `[N, units]` → linear → batch norm → leaky ReLU, shaped
/// `[N, C, H, W]`, → residual block.
struct Unflatten {
    linear: Linear,
    bn: Option<BatchNorm>,
    shape: [usize; 3],
    res: ResBlock,
}

impl Block for Unflatten {
    fn forward(&self, x: &Var) -> Result<Var> {
        let mut h = self.linear.forward(x, false)?;
        if let Some(bn) = &self.bn {
            h = bn.forward(&h)?;
        }
        let [c, hh, w] = self.shape;
        let h = h
            .unary(Unary::LeakyRelu)?
            .reshape(&[x.shape()[0], c, hh, w])?;
        self.res.forward(&h)
    }
}

impl Module for Unflatten {
    fn children(&self) -> Vec<&dyn Module> {
        let mut c: Vec<&dyn Module> = vec![&self.linear];
        if let Some(bn) = &self.bn {
            c.push(bn);
        }
        c.push(&self.res);
        c
    }
}

/// A spatial diagonal Gaussian: (μ, log σ²) as the two channel halves of one 3×3 convolution
/// of a feature map (one column matrix and one GEMM for both), each flattened to
/// `[N, channels·H·W]` (NCHW order).
struct ConvGaussian {
    conv: Conv2d,
    channels: usize,
    variance: Variance,
}

impl ConvGaussian {
    fn new(
        engine: &Engine,
        name: &str,
        cin: usize,
        channels: usize,
        seed: &mut impl FnMut() -> u64,
        variance: Variance,
    ) -> Result<ConvGaussian> {
        Ok(ConvGaussian {
            conv: Conv2d::new(engine, name, cin, 2 * channels, 3, 1, 1, seed())?,
            channels,
            variance,
        })
    }
}

impl Head for ConvGaussian {
    fn forward(&self, h: &Var) -> Result<(Var, Var)> {
        let y = self.conv.forward(h)?;
        let (n, c) = (y.shape()[0], self.channels);
        let half = |r: std::ops::Range<usize>| {
            let v = y.slice(1, r)?;
            v.reshape(&[n, v.value().numel() / n])
        };
        Ok((half(0..c)?, self.variance.log_variance(half(c..2 * c)?)?))
    }
}

impl Module for ConvGaussian {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.conv]
    }
}

/// The pixels' Bernoulli logits from [t_1, z_1^BU, z_1^TD]: a transposed 4×4 convolution to
/// one channel at full resolution, flattened to `[N, side²]`.
struct ConvLogits(ConvTranspose2d);

impl Block for ConvLogits {
    fn forward(&self, x: &Var) -> Result<Var> {
        let y = self.0.forward(x)?;
        let n = y.shape()[0];
        y.reshape(&[n, y.value().numel() / n])
    }
}

impl Module for ConvLogits {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.0]
    }
}

impl Biva {
    /// The convolutional BIVA: d_1, d_2 by strided convolutions (x → side/2, [d_1, z_1^BU] →
    /// side/4), d_3 dense over [d_2, z_2^BU]; on the way down t_2 from z_3 by a linear map
    /// shaped to side/4, t_1 by a transposed convolution of [t_2, z_2^BU, z_2^TD], and the
    /// logits by one of [t_1, z_1^BU, z_1^TD]. Every spatial Gaussian is a 3×3 convolution; the
    /// per-layer KL of a spatial latent sums its positions and channels.
    pub fn conv(engine: &Engine, config: ConvBivaConfig, seed: u64) -> Result<Biva> {
        config.check()?;
        let mut next = 0;
        let mut seed_of = || {
            next += 1;
            layer_seed(seed, next)
        };
        let ([c1, c2], [z1, z2]) = (config.channels, config.latent_channels);
        let (bn, var) = (config.batchnorm, config.variance);
        let (side, zt) = (config.side, config.top_latent);
        let quarter = side / 4;
        let mut nets = Nets::default();
        // Bottom-up: x → d_1 [c1, side/2], [d_1, z_1] → d_2 [c2, side/4], [d_2, z_2] → d_3 dense.
        let mut first = ConvBlock::new(engine, "up.0", (1, c1, false), bn, &mut seed_of)?;
        first.image = Some(side);
        nets.up.push(Box::new(first));
        let g = ConvGaussian::new(engine, "up.0.q", c1, z1, &mut seed_of, var)?;
        nets.q_bu.push(Box::new(g));
        let b = ConvBlock::new(engine, "up.1", (c1 + z1, c2, false), bn, &mut seed_of)?;
        nets.up.push(Box::new(b));
        let g = ConvGaussian::new(engine, "up.1.q", c2, z2, &mut seed_of, var)?;
        nets.q_bu.push(Box::new(g));
        let flat = (c2 + z2) * quarter * quarter;
        let top = Dense::new(engine, "up.2", flat, config.top_hidden, bn, &mut seed_of)?;
        nets.up.push(Box::new(Flatten(top)));
        let g = Gaussian::new(engine, "up.2.q", config.top_hidden, zt, &mut seed_of)?
            .with_variance(var);
        nets.q_bu.push(Box::new(g));
        // Top-down, level 1 first (the order of the MLP's blocks): t_1 from the level-2
        // carrier, t_2 from z_3.
        let b = ConvBlock::new(engine, "down.0", (c2 + 2 * z2, c1, true), bn, &mut seed_of)?;
        nets.down.push(Box::new(b));
        let t2 = Unflatten {
            linear: Linear::new(engine, "down.1", zt, c2 * quarter * quarter, seed_of())?,
            bn: bn
                .then(|| BatchNorm::new(engine, "down.1.bn", c2 * quarter * quarter))
                .transpose()?,
            shape: [c2, quarter, quarter],
            res: ResBlock::new(engine, "down.1.res", c2, (c2 / 2).max(1), seed_of())?,
        };
        nets.down.push(Box::new(t2));
        for (i, (z, c)) in [(z1, c1), (z2, c2)].into_iter().enumerate() {
            for (heads, what, inputs) in [
                (&mut nets.p_bu, "p_bu", c),
                (&mut nets.p_td, "p_td", c),
                (&mut nets.q_td, "q_td", 2 * c),
            ] {
                let name = format!("down.{i}.{what}");
                let g = ConvGaussian::new(engine, &name, inputs, z, &mut seed_of, var)?;
                heads.push(Box::new(g));
            }
        }
        let logits = ConvTranspose2d::new(engine, "out", c1 + 2 * z1, 1, 4, 2, 1, 0, seed_of())?;
        let half = (side / 2) * (side / 2);
        let units = [z1 * half, z2 * quarter * quarter, zt];
        let description = [
            ("model", "biva-conv".to_string()),
            ("side", side.to_string()),
            ("channels", format!("{:?}", config.channels)),
            ("latent_channels", format!("{:?}", config.latent_channels)),
            ("top_hidden", config.top_hidden.to_string()),
            ("top_latent", zt.to_string()),
            ("batchnorm", bn.to_string()),
            ("variance", var.name().to_string()),
        ];
        let description = (description.into_iter())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let shape = Shape {
            description,
            pixels: side * side,
            units,
            rows_per_pass: config.rows_per_pass(),
        };
        Ok(nets.assemble(engine, Box::new(ConvLogits(logits)), shape))
    }
}
