//! PixelCNN layers: the masked convolution and the gated block of van den Oord et al. 2016
//! ("Conditional Image Generation with PixelCNN Decoders"). Tests: `tests/pixelcnn.rs`.

use super::{Conv2d, Linear, Module, layer_seed, weight_and_bias};
use crate::engine::{Engine, Error, Result};
use crate::kernels::masked_conv::{Mask, Taps};
use crate::tape::{Param, Var};

/// A convolution that reads only `taps` (a PixelCNN mask, a gated stack's window, a shift):
/// weight `[Cout, taps, Cin]`, bias `[Cout]`, PyTorch's init with fan_in = Cin·taps.
pub struct MaskedConv2d {
    pub weight: Param,
    pub bias: Param,
    pub taps: Taps,
}

impl MaskedConv2d {
    pub fn new(
        engine: &Engine,
        name: &str,
        cin: usize,
        cout: usize,
        taps: Taps,
        seed: u64,
    ) -> Result<MaskedConv2d> {
        let t = taps.len();
        let (weight, bias) = weight_and_bias(engine, name, &[cout, t, cin], cout, cin * t, seed)?;
        Ok(MaskedConv2d { weight, bias, taps })
    }

    /// x [B, Cin, H, W] -> [B, Cout, H, W].
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let tape = x.tape();
        let (w, b) = (tape.param(&self.weight), tape.param(&self.bias));
        x.masked_conv(&w, Some(&b), &self.taps)
    }
}

impl Module for MaskedConv2d {
    fn params(&self) -> Vec<Param> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}

/// What a gated block is conditioned on, as tape values: a class one-hot [B, classes] and a
/// spatial map [B, Cs, H, W] of the image's size (e.g. VQ-VAE-2's top codes for its bottom prior).
#[derive(Clone, Copy, Default)]
pub struct Condition<'a> {
    pub class: Option<&'a Var>,
    pub spatial: Option<&'a Var>,
}

/// A gated block's sizes and conditioning.
#[derive(Clone, Copy, Debug)]
pub struct GatedBlockConfig {
    /// Input channels of both stacks.
    pub cin: usize,
    /// Channels p of both stacks' outputs (the gates see 2p pre-activations).
    pub channels: usize,
    /// Odd kernel size k: the vertical stack reads ⌈k/2⌉ × k, the horizontal one 1 × ⌈k/2⌉.
    pub kernel: usize,
    /// A for the first block (the horizontal stack excludes the current pixel, no residual);
    /// B for the others (cin must equal channels, for the residual).
    pub mask: Mask,
    /// Classes of the class embedding (0: none).
    pub classes: usize,
    /// Channels and odd kernel size of the spatial condition's convolution (None: none).
    pub spatial: Option<(usize, usize)>,
}

/// The gated PixelCNN block (van den Oord et al. 2016, fig. 2):
/// vertical: v' = gate(Wv ∗ v + cond), Wv over the k×k window's rows above and current row;
/// horizontal: h' = h + W1(gate(Wh ∗ h + Wl ∗ shift(Wv ∗ v) + cond)), Wh over the current
/// row's left half and centre (mask B) or left half only (mask A, no residual), Wl a 1×1 map
/// of the vertical pre-activations shifted down one row so that the horizontal stack sees only
/// rows above through them: every pixel above the current row within reach is seen, so the
/// original PixelCNN's blind spot is gone. gate(a, b) = tanh(a)·σ(b) over the two channel
/// halves (one fused kernel, `kernels::gated`); cond = V·onehot(class) + Vs ∗ map, added to
/// both stacks' pre-activations (eq. 4-5).
pub struct GatedBlock {
    pub config: GatedBlockConfig,
    vertical: MaskedConv2d,
    horizontal: MaskedConv2d,
    /// The down-shift and 1×1 link in one layer: it reads the pixel above.
    link: MaskedConv2d,
    out: MaskedConv2d,
    class: Option<Linear>,
    spatial: Option<Conv2d>,
}

impl GatedBlock {
    pub fn new(
        engine: &Engine,
        name: &str,
        config: GatedBlockConfig,
        seed: u64,
    ) -> Result<GatedBlock> {
        let c = config;
        let p2 = 2 * c.channels;
        if c.mask == Mask::B && c.cin != c.channels {
            return Err(Error::bad(
                "GatedBlock",
                format!(
                    "a mask-B block adds its input to its output: cin {} must equal channels {}",
                    c.cin, c.channels
                ),
            ));
        }
        let s = |i: u64| layer_seed(seed, i);
        let conv = |part: &str, cin, cout, taps, i| {
            MaskedConv2d::new(engine, &format!("{name}.{part}"), cin, cout, taps, s(i))
        };
        let spatial = match c.spatial {
            Some((cs, k)) if k % 2 == 1 => {
                let name = format!("{name}.spatial");
                Some(Conv2d::new(engine, &name, cs, p2, k, 1, k / 2, s(6))?)
            }
            Some((_, k)) => {
                let why = format!("spatial kernel {k} must be odd (the map keeps its size)");
                return Err(Error::bad("GatedBlock", why));
            }
            None => None,
        };
        let class = match c.classes {
            0 => None,
            n => Some(Linear::new(engine, &format!("{name}.class"), n, p2, s(5))?),
        };
        Ok(GatedBlock {
            config,
            vertical: conv("vertical", c.cin, p2, Taps::vertical(c.kernel)?, 1)?,
            horizontal: conv(
                "horizontal",
                c.cin,
                p2,
                Taps::horizontal(c.kernel, c.mask)?,
                2,
            )?,
            link: conv("link", p2, p2, Taps::down_shift(), 3)?,
            out: conv("out", c.channels, c.channels, Taps::pointwise(), 4)?,
            class,
            spatial,
        })
    }

    /// The conditioning term added to the gates' pre-activations: [B, 2p, H, W] with a spatial
    /// map, [B, 2p] with a class alone, None without conditioning. It does not depend on the
    /// stacks, so a sampler computes it once for all positions.
    pub fn condition(&self, cond: &Condition) -> Result<Option<Var>> {
        let given = |what: &str, has: bool, wanted: bool| match (has, wanted) {
            (true, false) => Err(Error::bad(
                "GatedBlock",
                format!("a {what} condition was given to a block built without one"),
            )),
            (false, true) => Err(Error::bad(
                "GatedBlock",
                format!("the block is conditioned on a {what}; none was given"),
            )),
            _ => Ok(()),
        };
        given("class", cond.class.is_some(), self.class.is_some())?;
        given("spatial", cond.spatial.is_some(), self.spatial.is_some())?;
        let class = match (&self.class, cond.class) {
            (Some(l), Some(y)) => Some(l.forward(y, false)?),
            _ => None,
        };
        let spatial = match (&self.spatial, cond.spatial) {
            (Some(conv), Some(m)) => Some(conv.forward(m)?),
            _ => None,
        };
        match (spatial, class) {
            (Some(s), Some(c)) => {
                // [B, 2p, H·W] + [B, 2p, 1]: the class term broadcast over the positions.
                let sh = s.shape().to_vec();
                let flat = s.reshape(&[sh[0], sh[1], sh[2] * sh[3]])?;
                let c = c.reshape(&[sh[0], sh[1], 1])?;
                Ok(Some(flat.add(&c)?.reshape(&sh)?))
            }
            (s, c) => Ok(s.or(c)),
        }
    }

    /// One block: (v, h) [B, cin, H, W] each -> (v', h') [B, channels, H, W], with the
    /// conditioning term of [`GatedBlock::condition`] added inside both gates.
    pub fn forward(&self, v: &Var, h: &Var, cond: Option<&Var>) -> Result<(Var, Var)> {
        let v_pre = self.vertical.forward(v)?;
        let v_out = v_pre.gated(cond)?;
        let h_pre = self
            .horizontal
            .forward(h)?
            .add(&self.link.forward(&v_pre)?)?;
        let h_gated = self.out.forward(&h_pre.gated(cond)?)?;
        let h_out = match self.config.mask {
            Mask::A => h_gated,
            Mask::B => h.add(&h_gated)?,
        };
        Ok((v_out, h_out))
    }
}

impl Module for GatedBlock {
    fn params(&self) -> Vec<Param> {
        let mut p = Vec::new();
        for conv in [&self.vertical, &self.horizontal, &self.link, &self.out] {
            p.extend(conv.params());
        }
        p.extend(self.class.iter().flat_map(|l| l.params()));
        p.extend(self.spatial.iter().flat_map(|c| c.params()));
        p
    }
}
