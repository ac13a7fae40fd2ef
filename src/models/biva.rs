//! BIVA (Maaløe et al. 2019), a reduced MLP version: a bottom-up chain of latents z_i^BU drawn
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
            variance: Variance::Softplus,
        }
    }
}

const LEVELS: usize = 3;

/// The reduced MLP BIVA.
pub struct Biva {
    pub config: BivaConfig,
    engine: Engine,
    /// Deterministic bottom-up blocks d_i (from x, then from [d_{i−1}, z_{i−1}^BU]).
    up: Vec<Dense>,
    /// q(z_i^BU | d_i) for levels 1, 2 and q(z_3 | d_3).
    q_bu: Vec<Gaussian>,
    /// Top-down blocks t_i for levels 1, 2 (from z_3, then from [t_{i+1}, z_{i+1}^BU, z_{i+1}^TD]).
    down: Vec<Dense>,
    /// p(z_i^BU | t_i), p(z_i^TD | t_i) and q(z_i^TD | t_i, d_i) for levels 1, 2.
    p_bu: Vec<Gaussian>,
    p_td: Vec<Gaussian>,
    q_td: Vec<Gaussian>,
    /// From [t_1, z_1^BU, z_1^TD] to the pixels' Bernoulli logits.
    out: Dense,
    out_logits: Linear,
}

impl Biva {
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
        let (mut up, mut q_bu, mut down) = (vec![], vec![], vec![]);
        let (mut p_bu, mut p_td, mut q_td) = (vec![], vec![], vec![]);
        for i in 0..LEVELS {
            let from = if i == 0 {
                config.input
            } else {
                h[i - 1] + z[i - 1]
            };
            up.push(Dense::new(
                engine,
                &format!("up.{i}"),
                from,
                h[i],
                bn,
                &mut seed_of,
            )?);
            let g = Gaussian::new(engine, &format!("up.{i}.q"), h[i], z[i], &mut seed_of)?
                .with_variance(config.variance);
            q_bu.push(g);
        }
        for i in 0..LEVELS - 1 {
            let name = format!("down.{i}");
            let from = Self::carrier_width(&config, i);
            down.push(Dense::new(engine, &name, from, h[i], bn, &mut seed_of)?);
            p_bu.push(
                Gaussian::new(engine, &format!("{name}.p_bu"), h[i], z[i], &mut seed_of)?
                    .with_variance(config.variance),
            );
            p_td.push(
                Gaussian::new(engine, &format!("{name}.p_td"), h[i], z[i], &mut seed_of)?
                    .with_variance(config.variance),
            );
            let g = Gaussian::new(
                engine,
                &format!("{name}.q_td"),
                2 * h[i],
                z[i],
                &mut seed_of,
            )?
            .with_variance(config.variance);
            q_td.push(g);
        }
        let out = Dense::new(engine, "out", h[0] + 2 * z[0], h[0], bn, &mut seed_of)?;
        let out_logits = Linear::new(engine, "out.logits", h[0], config.input, seed_of())?;
        Ok(Biva {
            config,
            engine: engine.clone(),
            up,
            q_bu,
            down,
            p_bu,
            p_td,
            q_td,
            out,
            out_logits,
        })
    }

    /// Width of the carrier into level `i` < 2: z_3, or [t_{i+1}, z_{i+1}^BU, z_{i+1}^TD].
    fn carrier_width(c: &BivaConfig, i: usize) -> usize {
        match i + 2 == LEVELS {
            true => c.latent[LEVELS - 1],
            false => c.hidden[i + 1] + 2 * c.latent[i + 1],
        }
    }
}

impl Module for Biva {
    fn children(&self) -> Vec<&dyn Module> {
        let mut c: Vec<&dyn Module> = Vec::new();
        c.extend(self.up.iter().map(|m| m as &dyn Module));
        c.extend(self.q_bu.iter().map(|m| m as &dyn Module));
        c.extend(self.down.iter().map(|m| m as &dyn Module));
        for g in [&self.p_bu, &self.p_td, &self.q_td] {
            c.extend(g.iter().map(|m| m as &dyn Module));
        }
        c.push(&self.out);
        c.push(&self.out_logits);
        c
    }
}

impl Likelihood for Biva {
    fn pixels(&self) -> usize {
        self.config.input
    }

    fn stochastic_layers(&self) -> Vec<LayerInfo> {
        let z = self.config.latent;
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
        4000
    }
}

impl Hierarchy for Biva {
    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn describe(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let mut d =
            super::hierarchy::describe_mlp("biva-mlp", c.input, &c.hidden, &c.latent, c.batchnorm);
        d.push(("variance".into(), c.variance.name().into()));
        d
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
                h = Var::concat(&[&d[i - 1], &bu[i - 1].z], 1)?;
            }
            d.push(self.up[i].forward(&h)?);
            let (mu, logvar) = self.q_bu[i].forward(&d[i])?;
            let mut layer = gaussian_layer(mu, logvar, None, noise)?;
            // Below the top, every level above is drawn from this draw: a one-sample KL term.
            layer.analytic = i + 1 == LEVELS;
            bu.push(layer);
        }
        let top = bu.pop().expect("the top level");
        let mut carrier = top.z.clone();
        let mut td: Vec<Option<LayerVars>> = (0..LEVELS - 1).map(|_| None).collect();
        for i in (0..LEVELS - 1).rev() {
            let t = self.down[i].forward(&carrier)?;
            bu[i].prior = Some(self.p_bu[i].forward(&t)?);
            let (mu, logvar) = self.q_td[i].forward(&Var::concat(&[&t, &d[i]], 1)?)?;
            let prior = self.p_td[i].forward(&t)?;
            let layer = gaussian_layer(mu, logvar, Some(prior), noise)?;
            carrier = Var::concat(&[&t, &bu[i].z, &layer.z], 1)?;
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
        let units = self.config.latent[LEVELS - 1];
        Ok(tape.input(&noise.normal(&self.engine, &[n, units])?))
    }

    /// t_i from the carrier, z_i^BU and z_i^TD from their priors given t_i; returns
    /// [t_i, z_i^BU, z_i^TD].
    fn step(&self, _: &Tape, level: usize, carrier: &Var, noise: Option<&Noise>) -> Result<Var> {
        let t = self.down[level].forward(carrier)?;
        let (mu, logvar) = self.p_bu[level].forward(&t)?;
        let z_bu = gaussian_layer(mu, logvar, None, noise)?.z;
        let (mu, logvar) = self.p_td[level].forward(&t)?;
        let z_td = gaussian_layer(mu, logvar, None, noise)?.z;
        Var::concat(&[&t, &z_bu, &z_td], 1)
    }

    fn logits(&self, carrier: &Var) -> Result<Var> {
        self.out_logits.forward(&self.out.forward(carrier)?, false)
    }
}
