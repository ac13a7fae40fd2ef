//! Diverse colorization (Deshpande et al. 2017, "Learning Diverse Image Colorization"): a VAE
//! over colour fields whose decoder also sees the grey image, trained with the paper's decoder
//! loss (Mahalanobis distance on the fields' principal components, colourfulness weights,
//! gradient term — each switchable), then a mixture density network P(z | grey) from the grey
//! image to the VAE's code. Beside it, in the same run: the VAE with L2 alone, a conditional
//! VAE sampled from its prior, and a deterministic regression. Tests: `tests/colorize.rs`.

use crate::data::Epoch;
use crate::data::colour::Colourised;
use crate::engine::{Engine, Error, Result, Tensor};
use crate::kernels::mdn::MdnLoss;
use crate::kernels::random;
use crate::nn::{Mlp, Module, layer_seed};
use crate::optim::{Batch, Examples, Group, StepInfo, Terms, Trainable};
use crate::tape::{Tape, Var};

/// Which terms the VAE's decoder loss adds to L2 (the paper's Eq. 4 and its code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderLoss {
    /// ½·Mahalanobis distance of the error on the fields' top principal components.
    pub mahalanobis: bool,
    /// The L2 term weighted per pixel by the rarity of the true colour.
    pub colourfulness: bool,
    /// L2 of the error's horizontal and vertical differences.
    pub gradient: bool,
}

impl DecoderLoss {
    pub const FULL: DecoderLoss = DecoderLoss {
        mahalanobis: true,
        colourfulness: true,
        gradient: true,
    };
    pub const L2: DecoderLoss = DecoderLoss {
        mahalanobis: false,
        colourfulness: false,
        gradient: false,
    };

    fn describe(&self) -> String {
        format!(
            "mahalanobis={} colourfulness={} gradient={}",
            self.mahalanobis, self.colourfulness, self.gradient
        )
    }
}

/// L2 weight 1/(2s²) with s = 0.1: a Gaussian decoder of standard deviation 0.1 in chroma units.
pub const L2_WEIGHT: f32 = 50.0;

/// Architecture and objective.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorizeConfig {
    /// Image side (h, w); fields are `[2, h, w]`.
    pub side: (usize, usize),
    pub latent: usize,
    pub hidden: usize,
    /// Mixture components of the MDN (8 in the paper).
    pub components: usize,
    /// The MDN's fixed σ, in units of the VAE's latent code.
    pub sigma: f32,
    pub mdn: MdnLoss,
    pub loss: DecoderLoss,
    /// KL weight of the colour VAE (the paper ramps it to 1e-2: its codes serve the MDN, not a
    /// prior).
    pub beta: f32,
    /// Principal components of the Mahalanobis loss.
    pub pcs: usize,
}

impl Default for ColorizeConfig {
    fn default() -> Self {
        ColorizeConfig {
            side: (28, 28),
            latent: 16,
            hidden: 256,
            components: 8,
            sigma: 0.2,
            mdn: MdnLoss::Closest,
            loss: DecoderLoss::FULL,
            beta: 0.1,
            pcs: 16,
        }
    }
}

/// The colour fields' principal components: `basis` `[K, P]` (orthonormal rows), their
/// variances (descending) and what the Mahalanobis loss divides by.
#[derive(Clone, Debug)]
pub struct Pca {
    pub basis: Vec<f32>,
    pub variances: Vec<f32>,
}

impl Pca {
    /// The top `k` components of `fields` (`[n, p]`), by 30 rounds of subspace iteration from a
    /// seeded start, on the host (n·p·k·60 flops).
    pub fn fit(fields: &[f32], p: usize, k: usize, seed: u64) -> Result<Pca> {
        let n = fields.len() / p.max(1);
        if n < 2 || k == 0 || k > p {
            let why = format!("{n} fields of {p} values for {k} components");
            return Err(Error::bad("Pca::fit", why));
        }
        let mut mean = vec![0.0f64; p];
        for f in fields.chunks_exact(p) {
            for (m, &v) in mean.iter_mut().zip(f) {
                *m += v as f64 / n as f64;
            }
        }
        let x: Vec<f64> = fields
            .chunks_exact(p)
            .flat_map(|f| f.iter().zip(&mean).map(|(&v, m)| v as f64 - m))
            .collect();
        let mut q: Vec<f64> = (0..k * p)
            .map(|i| (crate::data::colour::mix(seed, i as u64) as f64 / u64::MAX as f64) - 0.5)
            .collect();
        orthonormalise(&mut q, p);
        let mut var = vec![0.0; k];
        for _ in 0..30 {
            // y = Xᵀ(X q) / n for every row of q.
            let mut y = vec![0.0; k * p];
            for row in x.chunks_exact(p) {
                for c in 0..k {
                    let qc = &q[c * p..(c + 1) * p];
                    let s: f64 = row.iter().zip(qc).map(|(a, b)| a * b).sum::<f64>() / n as f64;
                    for (yv, &r) in y[c * p..(c + 1) * p].iter_mut().zip(row) {
                        *yv += s * r;
                    }
                }
            }
            for c in 0..k {
                var[c] = (0..p).map(|i| y[c * p + i] * q[c * p + i]).sum();
            }
            q = y;
            orthonormalise(&mut q, p);
        }
        // Sorted by variance, largest first.
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| var[b].total_cmp(&var[a]));
        Ok(Pca {
            basis: order
                .iter()
                .flat_map(|&c| q[c * p..(c + 1) * p].iter().map(|&v| v as f32))
                .collect(),
            variances: order.iter().map(|&c| var[c].max(0.0) as f32).collect(),
        })
    }

    /// The variances the loss divides by: each at least 1 % of the largest, so that a
    /// component of almost no variance (a synthetic data set has many) does not dominate.
    pub fn floored(&self) -> Vec<f32> {
        let floor = 0.01 * self.variances[0].max(f32::MIN_POSITIVE);
        self.variances.iter().map(|&v| v.max(floor)).collect()
    }
}

/// Gram–Schmidt over the rows (each `p` long) of `q`.
fn orthonormalise(q: &mut [f64], p: usize) {
    let k = q.len() / p;
    for c in 0..k {
        for d in 0..c {
            let dot: f64 = (0..p).map(|i| q[c * p + i] * q[d * p + i]).sum();
            for i in 0..p {
                q[c * p + i] -= dot * q[d * p + i];
            }
        }
        let norm = (0..p).map(|i| q[c * p + i].powi(2)).sum::<f64>().sqrt();
        for i in 0..p {
            q[c * p + i] /= norm.max(1e-30);
        }
    }
}

/// Σ_b [Σ_k (e_b·v_k)²/σ_k² + ‖e_b − Σ_k (e_b·v_k) v_k‖²/σ_K²]: the Mahalanobis distance of the
/// errors `err` `[B, P]` in the span of `basis` `[K, P]` (orthonormal rows) with variances
/// 1/`inv_var` `[K]`, and the residual outside it weighted by the last component's 1/σ_K²
/// (Deshpande et al. 2017, §3.2), shape `[1]`.
pub fn mahalanobis(err: &Var, basis: &Tensor, inv_var: &Tensor) -> Result<Var> {
    let tape = err.tape();
    let k = inv_var.numel();
    let last = inv_var.to_vec::<f32>()?[k - 1];
    let v = tape.input(basis);
    let proj = err.matmul(&v, false, true)?; // [B, K]
    let top = proj.mul(&proj)?.mul(&tape.input(inv_var))?.sum()?;
    let residual = err.sub(&proj.matmul(&v, false, false)?)?;
    top.add(&residual.mul(&residual)?.sum()?.affine(last, 0.0)?)
}

/// Σ of the squared horizontal and vertical differences of `err` `[B, C, H, W]`: the gradient
/// term, zero when the error is constant over the image.
pub fn gradient_term(err: &Var) -> Result<Var> {
    let &[_, _, h, w] = err.shape() else {
        let why = format!("errors must be [B, C, H, W], got {:?}", err.shape());
        return Err(Error::bad("gradient_term", why));
    };
    let dx = err.slice(3, 1..w)?.sub(&err.slice(3, 0..w - 1)?)?;
    let dy = err.slice(2, 1..h)?.sub(&err.slice(2, 0..h - 1)?)?;
    dx.mul(&dx)?.sum()?.add(&dy.mul(&dy)?.sum()?)
}

/// Per-pixel colourfulness weights of `fields` (`[n, 2, h, w]`): the rarer a pixel's colour
/// (its (U, V) bin in a 10×10 grid over [−0.5, 0.5]²) over the whole set, the larger its weight,
/// 1/((1 − λ)·p + λ/Q) with λ = ½ and Q occupied bins, normalised to mean 1 over pixels (Zhang
/// et al. 2016's rebalancing, which the paper's colourfulness term follows). Returns `[n, 2, h, w]`.
pub fn colourfulness_weights(fields: &[f32], px: usize) -> Vec<f32> {
    const BINS: usize = 10;
    let bin = |u: f32, v: f32| {
        let q = |c: f32| (((c + 0.5) * BINS as f32) as isize).clamp(0, BINS as isize - 1) as usize;
        q(u) * BINS + q(v)
    };
    let mut hist = [0f64; BINS * BINS];
    for f in fields.chunks_exact(2 * px) {
        for p in 0..px {
            hist[bin(f[p], f[px + p])] += 1.0;
        }
    }
    let total: f64 = hist.iter().sum();
    let occupied = hist.iter().filter(|&&c| c > 0.0).count().max(1) as f64;
    let raw: Vec<f64> = hist
        .iter()
        .map(|&c| 1.0 / (0.5 * c / total + 0.5 / occupied))
        .collect();
    // Normalise so that the expected weight of a pixel is 1.
    let mean: f64 = hist.iter().zip(&raw).map(|(c, w)| c / total * w).sum();
    let mut out = Vec::with_capacity(fields.len());
    for f in fields.chunks_exact(2 * px) {
        let w: Vec<f32> = (0..px)
            .map(|p| (raw[bin(f[p], f[px + p])] / mean) as f32)
            .collect();
        out.extend_from_slice(&w);
        out.extend_from_slice(&w);
    }
    out
}

/// A VAE over colour fields whose decoder sees z and the grey image; with `condition` its
/// encoder sees the grey image too (the conditional VAE baseline).
pub struct ColourVae {
    pub encoder: Mlp,
    pub decoder: Mlp,
    latent: usize,
    condition: bool,
}

impl ColourVae {
    fn new(e: &Engine, name: &str, c: &ColorizeConfig, condition: bool, seed: u64) -> Result<Self> {
        let px = c.side.0 * c.side.1;
        let input = 2 * px + if condition { px } else { 0 };
        Ok(ColourVae {
            encoder: Mlp::new(
                e,
                &format!("{name}.encoder"),
                &[input, c.hidden, 2 * c.latent],
                seed,
            )?,
            decoder: Mlp::new(
                e,
                &format!("{name}.decoder"),
                &[c.latent + px, c.hidden, c.hidden, 2 * px],
                layer_seed(seed, 100),
            )?,
            latent: c.latent,
            condition,
        })
    }

    /// (μ, log σ²) `[B, latent]` each of fields `chroma` `[B, 2P]` (and `grey` `[B, P]`).
    pub fn encode(&self, chroma: &Var, grey: &Var) -> Result<(Var, Var)> {
        let input = match self.condition {
            true => Var::concat(&[chroma, grey], 1)?,
            false => chroma.clone(),
        };
        let h = self.encoder.forward(&input)?;
        Ok((
            h.slice(1, 0..self.latent)?,
            h.slice(1, self.latent..2 * self.latent)?,
        ))
    }

    /// Fields `[B, 2P]` from codes `z` `[B, latent]` and `grey` `[B, P]`.
    pub fn decode(&self, z: &Var, grey: &Var) -> Result<Var> {
        self.decoder.forward(&Var::concat(&[z, grey], 1)?)
    }
}

impl Module for ColourVae {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.encoder, &self.decoder]
    }
}

/// The five networks trained in one run, one optimizer group each, stepped in this order:
/// the colour VAE, its MDN, the L2-only VAE, the conditional VAE, the regression.
pub struct Colorization {
    pub config: ColorizeConfig,
    pub vae: ColourVae,
    pub mdn: Mlp,
    pub vae_l2: ColourVae,
    pub cvae: ColourVae,
    pub regression: Mlp,
    basis: Tensor,
    inv_var: Tensor,
    engine: Engine,
}

/// Names of the optimizer groups, in phase order.
pub const GROUPS: [&str; 5] = ["vae", "mdn", "vae_l2", "cvae", "regression"];

impl Colorization {
    /// The networks from `seed`, the Mahalanobis loss from `pca`.
    pub fn new(engine: &Engine, config: ColorizeConfig, pca: &Pca, seed: u64) -> Result<Self> {
        let c = &config;
        let px = c.side.0 * c.side.1;
        let k = pca.variances.len();
        if pca.basis.len() != k * 2 * px {
            let why = format!(
                "{} basis values for {k} components of {} values",
                pca.basis.len(),
                2 * px
            );
            return Err(Error::bad("Colorization::new", why));
        }
        let inv: Vec<f32> = pca.floored().iter().map(|v| 1.0 / v).collect();
        let mdn_out = c.components * (c.latent + 1);
        Ok(Colorization {
            vae: ColourVae::new(engine, "vae", c, false, layer_seed(seed, 1))?,
            mdn: Mlp::new(
                engine,
                "mdn",
                &[px, c.hidden, c.hidden, mdn_out],
                layer_seed(seed, 2),
            )?,
            vae_l2: ColourVae::new(engine, "vae_l2", c, false, layer_seed(seed, 3))?,
            cvae: ColourVae::new(engine, "cvae", c, true, layer_seed(seed, 4))?,
            regression: Mlp::new(
                engine,
                "regression",
                &[px, c.hidden, c.hidden, 2 * px],
                layer_seed(seed, 5),
            )?,
            basis: Tensor::from_slice(engine, &pca.basis, &[k, 2 * px])?,
            inv_var: Tensor::from_slice(engine, &inv, &[k])?,
            engine: engine.clone(),
            config,
        })
    }

    fn pixels(&self) -> usize {
        self.config.side.0 * self.config.side.1
    }

    /// The decoder loss of predicted fields `pred` against `truth` (`[B, 2P]` each) with
    /// colourfulness weights `weights`, summed over the batch: `[1]`.
    pub fn decoder_loss(
        &self,
        pred: &Var,
        truth: &Var,
        weights: &Var,
        loss: DecoderLoss,
    ) -> Result<Var> {
        let err = pred.sub(truth)?;
        let sq = err.mul(&err)?;
        let l2 = match loss.colourfulness {
            true => sq.mul(weights)?.sum()?,
            false => sq.sum()?,
        };
        let mut total = l2.affine(L2_WEIGHT, 0.0)?;
        if loss.mahalanobis {
            let m = mahalanobis(&err, &self.basis, &self.inv_var)?;
            total = total.add(&m.affine(0.5, 0.0)?)?;
        }
        if loss.gradient {
            let (h, w) = self.config.side;
            let g = gradient_term(&err.reshape(&[err.shape()[0], 2, h, w])?)?;
            total = total.add(&g.affine(L2_WEIGHT, 0.0)?)?;
        }
        Ok(total)
    }

    /// The VAE's terms on one batch: (loss per image, decoder loss, KL).
    fn vae_terms(
        &self,
        vae: &ColourVae,
        rows: &Rows,
        loss: DecoderLoss,
        beta: f32,
        eps: &Tensor,
    ) -> Result<Terms> {
        let (mu, logvar) = vae.encode(&rows.chroma, &rows.grey)?;
        let z = mu.reparameterize(&logvar, eps)?;
        let kl = mu.kl_std_normal(&logvar)?.sum()?;
        let dec = self.decoder_loss(
            &vae.decode(&z, &rows.grey)?,
            &rows.chroma,
            &rows.weights,
            loss,
        )?;
        let inv_b = 1.0 / rows.batch as f32;
        let total = dec.add(&kl.affine(beta, 0.0)?)?.affine(inv_b, 0.0)?;
        Ok(vec![
            ("loss", total),
            ("decoder", dec.affine(inv_b, 0.0)?),
            ("kl", kl.affine(inv_b, 0.0)?),
        ])
    }

    /// The MDN's means `[B, K, latent]` and logits `[B, K]` for grey images `[B, P]`.
    pub fn mixture(&self, grey: &Var) -> Result<(Var, Var)> {
        let c = &self.config;
        let out = self.mdn.forward(grey)?;
        let split = c.components * c.latent;
        let means = out
            .slice(1, 0..split)?
            .reshape(&[grey.shape()[0], c.components, c.latent])?;
        Ok((means, out.slice(1, split..split + c.components)?))
    }
}

/// One batch's rows split into grey `[B, P]`, fields `[B, 2P]` and weights `[B, 2P]`.
struct Rows {
    grey: Var,
    chroma: Var,
    weights: Var,
    batch: usize,
}

impl Rows {
    fn of(tape: &Tape, x: &Tensor, px: usize) -> Result<Rows> {
        let x = tape.input(x);
        Ok(Rows {
            grey: x.slice(1, 0..px)?,
            chroma: x.slice(1, px..3 * px)?,
            weights: x.slice(1, 3 * px..5 * px)?,
            batch: x.shape()[0],
        })
    }
}

impl Module for Colorization {
    fn children(&self) -> Vec<&dyn Module> {
        vec![
            &self.vae,
            &self.mdn,
            &self.vae_l2,
            &self.cvae,
            &self.regression,
        ]
    }
}

impl Trainable for Colorization {
    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn describe(&self) -> Vec<(String, String)> {
        let c = &self.config;
        vec![
            ("model".into(), "colorize".into()),
            ("side".into(), format!("{:?}", c.side)),
            ("latent".into(), c.latent.to_string()),
            ("hidden".into(), c.hidden.to_string()),
            ("components".into(), c.components.to_string()),
            ("sigma".into(), c.sigma.to_string()),
            ("mdn_loss".into(), format!("{:?}", c.mdn)),
            ("decoder_loss".into(), c.loss.describe()),
            ("beta".into(), c.beta.to_string()),
            ("pcs".into(), c.pcs.to_string()),
        ]
    }

    fn groups(&self) -> Vec<Group> {
        let children = self.children();
        GROUPS
            .iter()
            .zip(children)
            .map(|(&name, m)| Group {
                name,
                params: m.params(),
            })
            .collect()
    }

    fn losses(&self, tape: &Tape, batch: &Batch, at: &StepInfo) -> Result<Terms> {
        let px = self.pixels();
        let rows = Rows::of(tape, &batch.x, px)?;
        let shape = [rows.batch, self.config.latent];
        let noise = |stream: u64| {
            let offset = at.step * random::blocks(at.batch * self.config.latent);
            random::normal(&self.engine, &shape, at.seed ^ stream, offset)
        };
        let mse = |pred: &Var| -> Result<Terms> {
            let err = pred.sub(&rows.chroma)?;
            let l = err
                .mul(&err)?
                .sum()?
                .affine(L2_WEIGHT / rows.batch as f32, 0.0)?;
            Ok(vec![("loss", l)])
        };
        match at.phase {
            0 => self.vae_terms(
                &self.vae,
                &rows,
                self.config.loss,
                self.config.beta,
                &noise(0xC0)?,
            ),
            1 => {
                // The MDN regresses the colour VAE's code of the true field (a constant).
                let (mu, _) = self.vae.encode(&rows.chroma, &rows.grey)?;
                let (means, logits) = self.mixture(&rows.grey)?;
                let c = &self.config;
                let l = means
                    .mdn_loss(&logits, mu.value(), c.sigma, c.mdn)?
                    .mean()?;
                Ok(vec![("loss", l)])
            }
            2 => self.vae_terms(
                &self.vae_l2,
                &rows,
                DecoderLoss::L2,
                self.config.beta,
                &noise(0xC2)?,
            ),
            3 => self.vae_terms(&self.cvae, &rows, DecoderLoss::L2, 1.0, &noise(0xC3)?),
            4 => mse(&self.regression.forward(&rows.grey)?),
            p => Err(Error::bad("Colorization::losses", format!("no phase {p}"))),
        }
    }
}

/// A colourised set with its colourfulness weights, batched for the trainer as rows
/// `[grey | field | weights]` (`[B, 5P]`).
pub struct ColourExamples {
    pub data: Colourised,
    pub weights: Vec<f32>,
}

impl ColourExamples {
    pub fn new(data: Colourised) -> ColourExamples {
        let weights = colourfulness_weights(&data.chroma, data.pixels());
        ColourExamples { data, weights }
    }
}

impl Examples for ColourExamples {
    fn count(&self) -> usize {
        self.data.len()
    }

    fn batch(&self, engine: &Engine, epoch: &Epoch, step: usize) -> Result<Batch> {
        let indices = epoch.batch(step).to_vec();
        let px = self.data.pixels();
        let mut host = Vec::with_capacity(indices.len() * 5 * px);
        for &i in &indices {
            host.extend_from_slice(self.data.grey_of(i));
            host.extend_from_slice(self.data.chroma_of(i));
            host.extend_from_slice(&self.weights[i * 2 * px..(i + 1) * 2 * px]);
        }
        let x = Tensor::from_slice(engine, &host, &[indices.len(), 5 * px])?;
        let labels = indices
            .iter()
            .map(|&i| self.data.labels.get(i).copied().unwrap_or(0))
            .collect();
        Ok(Batch { x, labels, indices })
    }
}

/// Samples of one model for `n` grey images, `k` each: `[n, k, 2P]` on the host.
pub enum Sampler {
    /// The colour VAE decoding codes drawn from the MDN (component by π, z = its mean).
    Mdn,
    /// The conditional VAE decoding z ~ N(0, I).
    Cvae,
    /// The regression (the same field k times).
    Regression,
}

impl Colorization {
    /// `k` colourings of each grey image of `grey` (`[n, P]` host values), in chunks of 256
    /// images, drawn with `seed`: `[n, k, 2P]`.
    pub fn sample(&self, grey: &[f32], k: usize, sampler: Sampler, seed: u64) -> Result<Vec<f32>> {
        let px = self.pixels();
        let n = grey.len() / px;
        let d = self.config.latent;
        let mut out = Vec::with_capacity(n * k * 2 * px);
        for (chunk, g) in grey.chunks(256 * px).enumerate() {
            let m = g.len() / px;
            let tape = Tape::no_grad(&self.engine);
            let rep: Vec<f32> = g.chunks_exact(px).flat_map(|img| img.repeat(k)).collect();
            let grey_k = tape.input(&Tensor::from_slice(&self.engine, &rep, &[m * k, px])?);
            let fields = match sampler {
                Sampler::Regression => self.regression.forward(&grey_k)?,
                Sampler::Cvae => {
                    let eps =
                        random::normal(&self.engine, &[m * k, d], seed, chunk as u64 * 1_000_000)?;
                    self.cvae.decode(&tape.input(&eps), &grey_k)?
                }
                Sampler::Mdn => {
                    let one = tape.input(&Tensor::from_slice(&self.engine, g, &[m, px])?);
                    let (means, logits) = self.mixture(&one)?;
                    let z = pick_components(
                        &means.value().to_vec()?,
                        &logits.value().to_vec()?,
                        (m, k),
                        self.config.components,
                        d,
                        seed ^ chunk as u64,
                    );
                    self.vae.decode(
                        &tape.input(&Tensor::from_slice(&self.engine, &z, &[m * k, d])?),
                        &grey_k,
                    )?
                }
            };
            out.extend(fields.value().to_vec::<f32>()?);
        }
        Ok(out)
    }

    /// Reconstructions of `(grey, fields)` through a VAE's mean code: `[n, 2P]`.
    pub fn reconstruct(&self, vae: &ColourVae, grey: &[f32], fields: &[f32]) -> Result<Vec<f32>> {
        let px = self.pixels();
        let n = grey.len() / px;
        let tape = Tape::no_grad(&self.engine);
        let g = tape.input(&Tensor::from_slice(&self.engine, grey, &[n, px])?);
        let f = tape.input(&Tensor::from_slice(&self.engine, fields, &[n, 2 * px])?);
        let (mu, _) = vae.encode(&f, &g)?;
        vae.decode(&mu, &g)?.value().to_vec()
    }
}

/// `k` codes per row from mixture means `[m, K, d]` and logits `[m, K]`: sample j of row i takes
/// the component that a seeded uniform picks by the mixture weights, and its mean.
fn pick_components(
    means: &[f32],
    logits: &[f32],
    (m, k): (usize, usize),
    comps: usize,
    d: usize,
    seed: u64,
) -> Vec<f32> {
    let mut z = Vec::with_capacity(m * k * d);
    for i in 0..m {
        let l = &logits[i * comps..(i + 1) * comps];
        let max = l.iter().cloned().fold(f32::MIN, f32::max);
        let w: Vec<f64> = l.iter().map(|&v| ((v - max) as f64).exp()).collect();
        let total: f64 = w.iter().sum();
        for j in 0..k {
            let u =
                crate::data::colour::mix(seed, (i * k + j) as u64) as f64 / u64::MAX as f64 * total;
            let mut acc = 0.0;
            let c = w
                .iter()
                .position(|&p| {
                    acc += p;
                    u < acc
                })
                .unwrap_or(comps - 1);
            z.extend_from_slice(&means[(i * comps + c) * d..(i * comps + c + 1) * d]);
        }
    }
    z
}
