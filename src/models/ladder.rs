//! The Ladder VAE of Sønderby et al. (2016), the paper's MLP model: a deterministic bottom-up
//! pass (two dense layers per level, batch norm, leaky ReLU) whose Gaussians are merged, level by
//! level, with the top-down generative path's (the precision-weighted merge, eq. 17–19); each
//! level's KL against its top-down prior; linear KL warm-up. `LadderConfig::ladder = false`
//! gives the same five levels with the ordinary bottom-up stochastic inference network.
//! Example: `ladder_vae`; tests: `tests/hierarchy.rs`.

use super::hierarchy::{
    Dense, Gaussian, Hierarchy, KL_TERMS, LayerVars, Pass, Variance, gaussian_layer,
};
use super::likelihood::{LayerInfo, Likelihood, Noise, Sampled, repeat_rows};
use crate::engine::{Engine, Error, Result, Tensor};
use crate::nn::{Linear, Module, layer_seed};
use crate::tape::{Tape, Var};

/// Widths of the paper's MLP Ladder VAE and the switches of its ablations.
#[derive(Clone, Debug, PartialEq)]
pub struct LadderConfig {
    pub input: usize,
    /// Deterministic units of each level, bottom first (each level: two dense layers).
    pub hidden: Vec<usize>,
    /// Stochastic units of each level, bottom first.
    pub latent: Vec<usize>,
    pub batchnorm: bool,
    /// How the Gaussian heads make log σ².
    pub variance: Variance,
    /// The ladder merge (true) or the ordinary bottom-up inference network q(z_i | z_{i−1}).
    pub ladder: bool,
}

impl Default for LadderConfig {
    /// Sønderby et al. 2016, MNIST MLP: 512-256-128-64-32 deterministic, 64-32-16-8-4 stochastic.
    fn default() -> Self {
        LadderConfig {
            input: 784,
            hidden: vec![512, 256, 128, 64, 32],
            latent: vec![64, 32, 16, 8, 4],
            batchnorm: true,
            variance: Variance::Softplus,
            ladder: true,
        }
    }
}

impl LadderConfig {
    fn check(&self) -> Result<()> {
        let n = self.latent.len();
        if n == 0 || n != self.hidden.len() || n > KL_TERMS.len() {
            return Err(Error::bad(
                "LadderConfig",
                format!(
                    "needs 1 to {} levels with one hidden width per latent layer, got hidden {:?} and latent {:?}",
                    KL_TERMS.len(),
                    self.hidden,
                    self.latent
                ),
            ));
        }
        if self.hidden.iter().chain(&self.latent).any(|&w| w == 0) || self.input == 0 {
            return Err(Error::bad("LadderConfig", "every width must be at least 1"));
        }
        Ok(())
    }
}

/// The Ladder VAE (or, with `ladder: false`, the plain five-level hierarchy).
pub struct LadderVae {
    pub config: LadderConfig,
    engine: Engine,
    /// Level i's deterministic bottom-up block (from x, d_{i−1} or, plain, z_{i−1}).
    up: Vec<Dense>,
    /// Level i's bottom-up Gaussian (μ̂_i, log σ̂_i²).
    up_gauss: Vec<Gaussian>,
    /// Level i < L's top-down block from z_{i+1} and its Gaussian p(z_i | z_{i+1}).
    down: Vec<Dense>,
    down_gauss: Vec<Gaussian>,
    /// From z_1 to the pixels' Bernoulli logits.
    out: Dense,
    out_logits: Linear,
}

impl LadderVae {
    /// A model with PyTorch-default init drawn from `seed`.
    pub fn new(engine: &Engine, config: LadderConfig, seed: u64) -> Result<LadderVae> {
        config.check()?;
        let mut next = 0;
        let mut seed_of = || {
            next += 1;
            layer_seed(seed, next)
        };
        let (h, z, bn) = (&config.hidden, &config.latent, config.batchnorm);
        let levels = z.len();
        let (mut up, mut up_gauss, mut down, mut down_gauss) = (vec![], vec![], vec![], vec![]);
        for i in 0..levels {
            let from = match (i, config.ladder) {
                (0, _) => config.input,
                (_, true) => h[i - 1],
                (_, false) => z[i - 1],
            };
            up.push(Dense::new(
                engine,
                &format!("up.{i}"),
                from,
                h[i],
                bn,
                &mut seed_of,
            )?);
            up_gauss.push(
                Gaussian::new(engine, &format!("up.{i}.q"), h[i], z[i], &mut seed_of)?
                    .with_variance(config.variance),
            );
        }
        for i in 0..levels - 1 {
            let name = format!("down.{i}");
            down.push(Dense::new(
                engine,
                &name,
                z[i + 1],
                h[i + 1],
                bn,
                &mut seed_of,
            )?);
            let g = Gaussian::new(engine, &format!("{name}.p"), h[i + 1], z[i], &mut seed_of)?
                .with_variance(config.variance);
            down_gauss.push(g);
        }
        let out = Dense::new(engine, "out", z[0], h[0], bn, &mut seed_of)?;
        let out_logits = Linear::new(engine, "out.logits", h[0], config.input, seed_of())?;
        Ok(LadderVae {
            config,
            engine: engine.clone(),
            up,
            up_gauss,
            down,
            down_gauss,
            out,
            out_logits,
        })
    }

    /// p(z_i | z_{i+1}): (μ, log σ²) `[N, latent_i]` for level `i` < L − 1.
    pub fn prior(&self, i: usize, z_above: &Var) -> Result<(Var, Var)> {
        self.down_gauss[i].forward(&self.down[i].forward(z_above)?)
    }
}

impl Module for LadderVae {
    fn children(&self) -> Vec<&dyn Module> {
        let mut c: Vec<&dyn Module> = Vec::new();
        c.extend(self.up.iter().map(|m| m as &dyn Module));
        c.extend(self.up_gauss.iter().map(|m| m as &dyn Module));
        c.extend(self.down.iter().map(|m| m as &dyn Module));
        c.extend(self.down_gauss.iter().map(|m| m as &dyn Module));
        c.push(&self.out);
        c.push(&self.out_logits);
        c
    }
}

impl Likelihood for LadderVae {
    fn pixels(&self) -> usize {
        self.config.input
    }

    fn stochastic_layers(&self) -> Vec<LayerInfo> {
        super::hierarchy::layer_infos(&self.config.latent)
    }

    fn sample_layers(&self, x: &Tensor, _: &[u8], k: usize, noise: &Noise) -> Result<Sampled> {
        super::hierarchy::sample_layers(self, x, k, noise)
    }

    fn rows_per_pass(&self) -> usize {
        4000
    }
}

impl Hierarchy for LadderVae {
    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn describe(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let kind = if c.ladder {
            "ladder-vae"
        } else {
            "plain-hierarchy-vae"
        };
        let mut d =
            super::hierarchy::describe_mlp(kind, c.input, &c.hidden, &c.latent, c.batchnorm);
        d.push(("variance".into(), c.variance.name().into()));
        d
    }

    /// The inference pass and the top-down path on `x` `[B, input]`, each image drawn `k` times
    /// (row i·k + j is draw j of image i), noise from `noise` (`None`: every z at its mean).
    fn pass(&self, tape: &Tape, x: &Tensor, k: usize, noise: Option<&Noise>) -> Result<Pass> {
        let levels = self.levels();
        let xv = tape.input(x);
        let repeat = |v: &Var| -> Result<Var> {
            match k {
                1 => Ok(v.clone()),
                _ => Ok(tape.input(&repeat_rows(v.value(), k)?)),
            }
        };
        let mut layers: Vec<Option<LayerVars>> = (0..levels).map(|_| None).collect();
        if self.config.ladder {
            // Sønderby et al. 2016, eq. 15–16: the deterministic bottom-up pass, d_i and the
            // bottom-up Gaussians q̂_i, computed once per image.
            let mut h = xv;
            let mut q = Vec::with_capacity(levels);
            for i in 0..levels {
                h = self.up[i].forward(&h)?;
                let (mu, logvar) = self.up_gauss[i].forward(&h)?;
                q.push((repeat(&mu)?, repeat(&logvar)?));
            }
            // The top level's posterior is its bottom-up Gaussian; below it, eq. 17–19.
            let top = levels - 1;
            let (mu, logvar) = q[top].clone();
            layers[top] = Some(gaussian_layer(mu, logvar, None, noise)?);
            for i in (0..top).rev() {
                let z_above = layers[i + 1].as_ref().expect("drawn above").z.clone();
                let (mu_p, logvar_p) = self.prior(i, &z_above)?;
                let (mu, logvar) = q[i].0.precision_merge(&q[i].1, &mu_p, &logvar_p)?;
                layers[i] = Some(gaussian_layer(mu, logvar, Some((mu_p, logvar_p)), noise)?);
            }
        } else {
            // The ordinary hierarchy: q(z_1 | x) and q(z_i | z_{i−1}) bottom-up, then the
            // top-down priors p(z_i | z_{i+1}) at those draws.
            let mut h = repeat(&xv)?;
            for ((up, gauss), slot) in self.up.iter().zip(&self.up_gauss).zip(&mut layers) {
                let (mu, logvar) = gauss.forward(&up.forward(&h)?)?;
                let mut l = gaussian_layer(mu, logvar, None, noise)?;
                // Every level above is drawn from this one's draw: a one-sample KL term.
                l.analytic = false;
                h = l.z.clone();
                *slot = Some(l);
            }
            for i in 0..levels - 1 {
                let z_above = layers[i + 1].as_ref().expect("drawn").z.clone();
                let prior = self.prior(i, &z_above)?;
                layers[i].as_mut().expect("drawn").prior = Some(prior);
            }
        }
        let layers: Vec<LayerVars> = layers.into_iter().map(|l| l.expect("drawn")).collect();
        let logits = self.logits(&layers[0].z)?;
        Ok(Pass { logits, layers })
    }

    fn kl_terms(&self) -> &'static [&'static str] {
        &KL_TERMS[..self.levels()]
    }

    fn levels(&self) -> usize {
        self.config.latent.len()
    }

    /// z_L ~ N(0, I): `[n, latent_L]`.
    fn top(&self, tape: &Tape, n: usize, noise: &Noise) -> Result<Var> {
        let units = *self.config.latent.last().expect("a level");
        Ok(tape.input(&noise.normal(&self.engine, &[n, units])?))
    }

    /// z_i from p(z_i | z_{i+1}), the carrier being z_{i+1}; returns z_i.
    fn step(&self, _: &Tape, level: usize, carrier: &Var, noise: Option<&Noise>) -> Result<Var> {
        let (mu, logvar) = self.prior(level, carrier)?;
        Ok(gaussian_layer(mu, logvar, None, noise)?.z)
    }

    /// Bernoulli logits `[N, input]` of p(x | z_1).
    fn logits(&self, z1: &Var) -> Result<Var> {
        self.out_logits.forward(&self.out.forward(z1)?, false)
    }
}
