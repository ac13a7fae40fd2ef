//! BIVA (Maaløe et al. 2019), as a reduced MLP or (`conv`) with the paper's convolutional
//! architecture and spatial latents: a bottom-up chain of latents z_i^BU drawn
//! while the deterministic bottom-up pass climbs, a top latent z_L, and on the way down a
//! top-down chain z_i^TD whose posterior reads both the deterministic top-down path and the
//! bottom-up features; every generative block reads the latents of the level above beside the
//! top-down state (the skip connections from the latents to the generative path); free bits per
//! layer. Example: `biva`; tests: `tests/hierarchy.rs`.

use super::hierarchy::{Dense, Gaussian, Hierarchy, LayerVars, Pass, Variance, gaussian_layer};
use super::likelihood::{LayerInfo, Likelihood, Noise, Sampled, repeat_rows};
use crate::engine::{Engine, Error, Result, Tensor};
use crate::nn::{Linear, Module, layer_seed};
use crate::tape::{Tape, Var};

mod conv;
pub use conv::ConvBivaConfig;

/// The KL terms of the three-level model, bottom first (the order of its stochastic layers).
pub const KL_TERMS: [&str; 5] = ["kl_z1_bu", "kl_z1_td", "kl_z2_bu", "kl_z2_td", "kl_z3"];

/// Widths of the three levels, bottom first.
#[derive(Clone, Debug, PartialEq)]
pub struct BivaConfig {
    pub input: usize,
    /// Deterministic units of each level (two dense layers each, both directions).
    pub hidden: [usize; 3],
    /// Stochastic units: levels 1 and 2 hold a BU and a TD latent of this width each, level 3
    /// the top latent.
    pub latent: [usize; 3],
    pub batchnorm: bool,
    /// How the Gaussian heads make log σ².
    pub variance: Variance,
}

impl Default for BivaConfig {
    /// Sized so that ten epochs fit the time of the Ladder VAE's (whose first three levels have
    /// these deterministic widths).
    fn default() -> Self {
        BivaConfig {
            input: 784,
            hidden: [512, 256, 128],
            latent: [32, 16, 8],
            batchnorm: true,
            variance: Variance::default(),
        }
    }
}

const LEVELS: usize = 3;

/// A deterministic block of either architecture: `[N, ...]` features in, `[N, ...]` out.
pub(crate) trait Block: Module {
    fn forward(&self, x: &Var) -> Result<Var>;
}

/// The (μ, log σ²) of a stochastic layer from features, each `[N, units]` (a spatial latent
/// flattened in NCHW order).
pub(crate) trait Head: Module {
    fn forward(&self, h: &Var) -> Result<(Var, Var)>;
}

impl Block for Dense {
    fn forward(&self, x: &Var) -> Result<Var> {
        Dense::forward(self, x)
    }
}

impl Head for Gaussian {
    fn forward(&self, h: &Var) -> Result<(Var, Var)> {
        Gaussian::forward(self, h)
    }
}

/// The MLP's output block: two dense layers, then the pixels' logits.
struct DenseLogits {
    dense: Dense,
    logits: Linear,
}

impl Block for DenseLogits {
    fn forward(&self, x: &Var) -> Result<Var> {
        self.logits.forward(&self.dense.forward(x)?, false)
    }
}

impl Module for DenseLogits {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.dense, &self.logits]
    }
}

/// BIVA over three levels, with the networks of either architecture: the reduced MLP
/// ([`Biva::new`]) or the convolutional one with spatial latents ([`Biva::conv`]).
pub struct Biva {
    engine: Engine,
    description: Vec<(String, String)>,
    pixels: usize,
    /// Stochastic units of levels 1, 2 (each of its BU and TD latents) and of the top latent.
    units: [usize; LEVELS],
    rows_per_pass: usize,
    nets: Nets,
    /// From [t_1, z_1^BU, z_1^TD] to the pixels' Bernoulli logits `[N, pixels]`.
    out: Box<dyn Block>,
}

impl Biva {
    /// The reduced MLP BIVA.
    pub fn new(engine: &Engine, config: BivaConfig, seed: u64) -> Result<Biva> {
        if config.input == 0 || config.hidden.iter().chain(&config.latent).any(|&w| w == 0) {
            return Err(Error::bad("BivaConfig", "every width must be at least 1"));
        }
        let mut next = 0;
        let mut seed_of = || {
            next += 1;
            layer_seed(seed, next)
        };
        let (h, z, bn) = (config.hidden, config.latent, config.batchnorm);
        let mut nets = Nets::default();
        for i in 0..LEVELS {
            let from = if i == 0 {
                config.input
            } else {
                h[i - 1] + z[i - 1]
            };
            let name = format!("up.{i}");
            nets.up.push(Box::new(Dense::new(
                engine,
                &name,
                from,
                h[i],
                bn,
                &mut seed_of,
            )?));
            let g = Gaussian::new(engine, &format!("{name}.q"), h[i], z[i], &mut seed_of)?
                .with_variance(config.variance);
            nets.q_bu.push(Box::new(g));
        }
        for i in 0..LEVELS - 1 {
            let name = format!("down.{i}");
            // The carrier into level i: z_3, or [t_{i+1}, z_{i+1}^BU, z_{i+1}^TD].
            let from = match i + 2 == LEVELS {
                true => z[LEVELS - 1],
                false => h[i + 1] + 2 * z[i + 1],
            };
            nets.down.push(Box::new(Dense::new(
                engine,
                &name,
                from,
                h[i],
                bn,
                &mut seed_of,
            )?));
            for (heads, what, inputs) in [
                (&mut nets.p_bu, "p_bu", h[i]),
                (&mut nets.p_td, "p_td", h[i]),
                (&mut nets.q_td, "q_td", 2 * h[i]),
            ] {
                let name = format!("{name}.{what}");
                let head = Gaussian::new(engine, &name, inputs, z[i], &mut seed_of)?;
                heads.push(Box::new(head.with_variance(config.variance)));
            }
        }
        let out = DenseLogits {
            dense: Dense::new(engine, "out", h[0] + 2 * z[0], h[0], bn, &mut seed_of)?,
            logits: Linear::new(engine, "out.logits", h[0], config.input, seed_of())?,
        };
        let c = &config;
        let mut description =
            super::hierarchy::describe_mlp("biva-mlp", c.input, &c.hidden, &c.latent, bn);
        description.push(("variance".into(), c.variance.name().into()));
        let shape = Shape {
            description,
            pixels: config.input,
            units: config.latent,
            rows_per_pass: 4000,
        };
        Ok(nets.assemble(engine, Box::new(out), shape))
    }
}

/// The networks of a BIVA below its output block, gathered while a constructor builds them.
#[derive(Default)]
struct Nets {
    /// Deterministic bottom-up blocks d_i (from x, then from [d_{i−1}, z_{i−1}^BU]).
    up: Vec<Box<dyn Block>>,
    /// q(z_i^BU | d_i) for levels 1, 2 and q(z_3 | d_3).
    q_bu: Vec<Box<dyn Head>>,
    /// Top-down blocks t_i for levels 1, 2 (from z_3, then from [t_{i+1}, z_{i+1}^BU, z_{i+1}^TD]).
    down: Vec<Box<dyn Block>>,
    /// p(z_i^BU | t_i), p(z_i^TD | t_i) and q(z_i^TD | t_i, d_i) for levels 1, 2.
    p_bu: Vec<Box<dyn Head>>,
    p_td: Vec<Box<dyn Head>>,
    q_td: Vec<Box<dyn Head>>,
}

/// What a constructor knows besides the networks.
struct Shape {
    description: Vec<(String, String)>,
    pixels: usize,
    units: [usize; LEVELS],
    rows_per_pass: usize,
}

impl Nets {
    fn assemble(self, engine: &Engine, out: Box<dyn Block>, shape: Shape) -> Biva {
        Biva {
            engine: engine.clone(),
            description: shape.description,
            pixels: shape.pixels,
            units: shape.units,
            rows_per_pass: shape.rows_per_pass,
            nets: self,
            out,
        }
    }
}

/// `features` `[N, F]` or `[N, C, H, W]` joined along axis 1 with `latents` `[N, units]` (a
/// spatial latent's units reshaped to `[N, units / (H·W), H, W]`): a skip connection.
fn join(features: &Var, latents: &[&Var]) -> Result<Var> {
    let s = features.shape().to_vec();
    let shaped: Vec<Var> = match s.len() {
        4 => (latents.iter())
            .map(|z| z.reshape(&[s[0], z.shape()[1] / (s[2] * s[3]), s[2], s[3]]))
            .collect::<Result<_>>()?,
        _ => latents.iter().map(|&z| z.clone()).collect(),
    };
    let mut parts = vec![features];
    parts.extend(shaped.iter());
    Var::concat(&parts, 1)
}

impl Module for Biva {
    fn children(&self) -> Vec<&dyn Module> {
        let mut c: Vec<&dyn Module> = Vec::new();
        let n = &self.nets;
        c.extend(n.up.iter().map(|m| &**m as &dyn Module));
        c.extend(n.q_bu.iter().map(|m| &**m as &dyn Module));
        c.extend(n.down.iter().map(|m| &**m as &dyn Module));
        for g in [&n.p_bu, &n.p_td, &n.q_td] {
            c.extend(g.iter().map(|m| &**m as &dyn Module));
        }
        c.push(&*self.out as &dyn Module);
        c
    }
}

impl Likelihood for Biva {
    fn pixels(&self) -> usize {
        self.pixels
    }

    fn stochastic_layers(&self) -> Vec<LayerInfo> {
        let z = self.units;
        KL_TERMS
            .iter()
            .zip([z[0], z[0], z[1], z[1], z[2]])
            .map(|(t, units)| LayerInfo {
                name: t.trim_start_matches("kl_").to_string(),
                units,
            })
            .collect()
    }

    fn sample_layers(&self, x: &Tensor, _: &[u8], k: usize, noise: &Noise) -> Result<Sampled> {
        super::hierarchy::sample_layers(self, x, k, noise)
    }

    fn rows_per_pass(&self) -> usize {
        self.rows_per_pass
    }
}

impl Hierarchy for Biva {
    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn describe(&self) -> Vec<(String, String)> {
        self.description.clone()
    }

    fn kl_terms(&self) -> &'static [&'static str] {
        &KL_TERMS
    }

    /// Maaløe et al. 2019, §3: the bottom-up pass draws z_i^BU ~ q(z_i^BU | d_i) while it
    /// climbs (x is repeated k times first: every level above depends on those draws), then
    /// the top-down pass draws z_i^TD ~ q(z_i^TD | t_i, d_i) and forms both priors from t_i.
    fn pass(&self, tape: &Tape, x: &Tensor, k: usize, noise: Option<&Noise>) -> Result<Pass> {
        let mut h = tape.input(&repeat_rows(x, k)?);
        let (mut d, mut bu): (Vec<Var>, Vec<LayerVars>) = (vec![], vec![]);
        for i in 0..LEVELS {
            if i > 0 {
                h = join(&d[i - 1], &[&bu[i - 1].z])?;
            }
            d.push(self.nets.up[i].forward(&h)?);
            let (mu, logvar) = self.nets.q_bu[i].forward(&d[i])?;
            let mut layer = gaussian_layer(mu, logvar, None, noise)?;
            // Below the top, every level above is drawn from this draw: a one-sample KL term.
            layer.analytic = i + 1 == LEVELS;
            bu.push(layer);
        }
        let top = bu.pop().expect("the top level");
        let mut carrier = top.z.clone();
        let mut td: Vec<Option<LayerVars>> = (0..LEVELS - 1).map(|_| None).collect();
        for i in (0..LEVELS - 1).rev() {
            let t = self.nets.down[i].forward(&carrier)?;
            bu[i].prior = Some(self.nets.p_bu[i].forward(&t)?);
            let (mu, logvar) = self.nets.q_td[i].forward(&Var::concat(&[&t, &d[i]], 1)?)?;
            let prior = self.nets.p_td[i].forward(&t)?;
            let layer = gaussian_layer(mu, logvar, Some(prior), noise)?;
            carrier = join(&t, &[&bu[i].z, &layer.z])?;
            td[i] = Some(layer);
        }
        let logits = self.logits(&carrier)?;
        let mut layers = Vec::with_capacity(2 * LEVELS - 1);
        for (b, t) in bu.into_iter().zip(td) {
            layers.push(b);
            layers.push(t.expect("drawn"));
        }
        layers.push(top);
        Ok(Pass { logits, layers })
    }

    fn levels(&self) -> usize {
        LEVELS
    }

    /// z_3 ~ N(0, I): the carrier into level 2.
    fn top(&self, tape: &Tape, n: usize, noise: &Noise) -> Result<Var> {
        let units = self.units[LEVELS - 1];
        Ok(tape.input(&noise.normal(&self.engine, &[n, units])?))
    }

    /// t_i from the carrier, z_i^BU and z_i^TD from their priors given t_i; returns
    /// [t_i, z_i^BU, z_i^TD].
    fn step(&self, _: &Tape, level: usize, carrier: &Var, noise: Option<&Noise>) -> Result<Var> {
        let t = self.nets.down[level].forward(carrier)?;
        let (mu, logvar) = self.nets.p_bu[level].forward(&t)?;
        let z_bu = gaussian_layer(mu, logvar, None, noise)?.z;
        let (mu, logvar) = self.nets.p_td[level].forward(&t)?;
        let z_td = gaussian_layer(mu, logvar, None, noise)?.z;
        join(&t, &[&z_bu, &z_td])
    }

    fn logits(&self, carrier: &Var) -> Result<Var> {
        self.out.forward(carrier)
    }
}
