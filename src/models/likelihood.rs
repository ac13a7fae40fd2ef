//! The likelihood evaluator shared by every latent-variable model: the test ELBO with the KL,
//! active units and KL-carrying units of each stochastic layer, and the importance-weighted bound
//! on log p(x) (Burda et al. 2016) in nats and bits/dim. Tests: `tests/likelihood.rs`.
//!
//! A model takes part by implementing [`Likelihood`]: given images it draws its stochastic
//! layers from q and reports each layer's sample, noise, posterior and prior Gaussians and
//! −log p(x | z); the evaluator forms every log density itself, in log space.

use crate::data::Split;
use crate::engine::{Engine, Error, Result, Tensor};
use crate::io::{Metrics, Progress};
use crate::kernels::elementwise::{self as ew, Binary};
use crate::kernels::{kl, layout, losses, random, reduce};
use crate::models::vae::Autoencoder;
use crate::nn::Module;
use crate::tape::Tape;
use std::cell::Cell;

/// Importance samples per image by default (the papers' protocol).
pub const DEFAULT_K: usize = 1000;
/// Test images in the IWAE estimate by default: the first 2,000.
pub const DEFAULT_IMAGES: usize = 2000;
/// Burda et al. (2016): unit u is active when `Cov_x(E_q[z_u])` > 0.01.
pub const ACTIVE_VARIANCE: f64 = 0.01;
/// A unit carries KL when its KL averaged over the test images exceeds 0.01 nats.
pub const KL_UNIT_NATS: f64 = 0.01;
/// Seed offset that keeps evaluation noise apart from training noise.
pub const EVAL_STREAM: u64 = 0x0E7A_1000_0000_0000;

/// A Philox normal stream that advances by itself: each draw takes the next counters, so a model
/// draws its layers' noise in order without counting blocks.
pub struct Noise {
    seed: u64,
    offset: Cell<u64>,
}

impl Noise {
    /// Stream `seed` from Philox block `offset` (see `kernels::random`).
    pub fn new(seed: u64, offset: u64) -> Noise {
        Noise {
            seed,
            offset: Cell::new(offset),
        }
    }

    /// Standard normals of `shape`, the stream's next values.
    pub fn normal(&self, engine: &Engine, shape: &[usize]) -> Result<Tensor> {
        let offset = self.offset.get();
        let t = random::normal(engine, shape, self.seed, offset)?;
        self.offset
            .set(offset + random::blocks(shape.iter().product()));
        Ok(t)
    }

    /// The next unused Philox block.
    pub fn offset(&self) -> u64 {
        self.offset.get()
    }
}

/// One stochastic layer of a sampled batch, all `[N, units]`: z = μ + exp(½ log σ²)·ε drawn from
/// the posterior q = N(μ, σ²), and the prior it is scored under.
pub struct Stochastic {
    pub z: Tensor,
    pub eps: Tensor,
    pub mu: Tensor,
    pub logvar: Tensor,
    /// (μ_p, log σ_p²) of p(z | the layers above) for each row; `None`: N(0, I).
    pub prior: Option<(Tensor, Tensor)>,
}

/// What a model returns for `B` images drawn `k` times (`N = B·k` rows, row i·k + j is draw j
/// of image i).
pub struct Sampled {
    /// −log p(x | z) per row, `[N]` nats.
    pub nll_x: Tensor,
    /// Every stochastic layer, in the order of [`Likelihood::stochastic_layers`].
    pub layers: Vec<Stochastic>,
}

/// A stochastic layer's name (as metrics.json shows it) and width.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub name: String,
    pub units: usize,
}

/// A latent-variable model the evaluator can score: a diagonal-Gaussian posterior per stochastic
/// layer, priors that are N(0, I) or diagonal Gaussians given the layers above, and any
/// likelihood p(x | z) that yields −log p(x | z) per row. Every [`Autoencoder`] implements it.
pub trait Likelihood: Module {
    /// Values per image (784 for 28×28), the D of bits/dim.
    fn pixels(&self) -> usize;

    /// The stochastic layers, bottom (next to x) first.
    fn stochastic_layers(&self) -> Vec<LayerInfo>;

    /// Draws every stochastic layer `k` times for each image of `x` `[B, pixels]` (`labels`:
    /// one per image, for a conditional model), its noise from `noise`, in evaluation mode
    /// and without a gradient tape.
    fn sample_layers(&self, x: &Tensor, labels: &[u8], k: usize, noise: &Noise) -> Result<Sampled>;

    /// Rows (images × samples) per call that keep every buffer of the model well inside the
    /// device's storage-binding limit.
    fn rows_per_pass(&self) -> usize {
        500
    }

    /// The device the model lives on: by default that of its first parameter.
    fn device(&self) -> Result<Engine> {
        self.params()
            .first()
            .map(|p| p.value().engine().clone())
            .ok_or_else(|| Error::bad("likelihood", "the model has no parameters"))
    }
}

/// Every row of `t` `[B, …]` repeated `k` times in place: `[B·k, …]`, row i·k + j = row i.
pub fn repeat_rows(t: &Tensor, k: usize) -> Result<Tensor> {
    if k == 1 {
        return Ok(t.clone());
    }
    let b = t.shape()[0];
    let rows: Vec<u32> = (0..b * k).map(|r| (r / k) as u32).collect();
    // Gathered as `[B, D]` rows (a feature map's row is its whole `[C, H, W]`).
    let flat = t.reshape(&[b, t.numel() / b.max(1)])?;
    let y = layout::gather(
        &flat,
        &Tensor::from_slice(t.engine(), &rows, &[rows.len()])?,
    )?;
    let mut shape = t.shape().to_vec();
    shape[0] = b * k;
    y.reshape(&shape)
}

impl<T: Autoencoder + ?Sized> Likelihood for T {
    fn pixels(&self) -> usize {
        self.dims().input
    }

    fn stochastic_layers(&self) -> Vec<LayerInfo> {
        vec![LayerInfo {
            name: "z".into(),
            units: self.dims().latent,
        }]
    }

    /// q(z|x, c) encoded once per image, then repeated k times; a Bernoulli p(x|z, c).
    fn sample_layers(&self, x: &Tensor, labels: &[u8], k: usize, noise: &Noise) -> Result<Sampled> {
        let engine = x.engine();
        let tape = Tape::no_grad(engine);
        let c = self.condition(labels)?;
        let (mu, logvar) =
            self.encode(&tape.input(x), c.as_ref().map(|c| tape.input(c)).as_ref())?;
        let (mu, logvar) = (repeat_rows(mu.value(), k)?, repeat_rows(logvar.value(), k)?);
        let c = c.map(|c| repeat_rows(&c, k)).transpose()?;
        let eps = noise.normal(engine, mu.shape())?;
        let z = kl::reparameterize(&mu, &logvar, &eps)?;
        let logits = self.decode(&tape.input(&z), c.map(|c| tape.input(&c)).as_ref())?;
        let nll_x = losses::bce_with_logits(logits.value(), &repeat_rows(x, k)?)?;
        Ok(Sampled {
            nll_x,
            layers: vec![Stochastic {
                z,
                eps,
                mu,
                logvar,
                prior: None,
            }],
        })
    }
}

/// What to evaluate: `k` importance samples on the first `iwae_images` images (the ELBO and the
/// units on all of them), noise from stream `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalSettings {
    pub k: usize,
    pub iwae_images: usize,
    pub seed: u64,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            k: DEFAULT_K,
            iwae_images: DEFAULT_IMAGES,
            seed: 0,
        }
    }
}

/// One stochastic layer's test figures.
#[derive(Clone, Debug)]
pub struct LayerReport {
    pub name: String,
    pub units: usize,
    /// KL(q ‖ p) of the layer, mean nats per image (analytic given the layers above).
    pub kl: f64,
    /// Each unit's KL, mean nats per image.
    pub unit_kl: Vec<f64>,
    /// Each unit's Var_x `E_q[z_u]`.
    pub unit_variances: Vec<f64>,
    /// Units with Var_x `E_q[z_u]` > [`ACTIVE_VARIANCE`] (Burda et al. 2016). In a top-down
    /// model this also counts variation inherited from the layer above.
    pub active_units: usize,
    /// Units whose mean KL exceeds [`KL_UNIT_NATS`].
    pub kl_units: usize,
}

/// Test-set figures of a model.
#[derive(Clone, Debug)]
pub struct Report {
    /// −ELBO = recon + Σ KL, nats per image, one draw per image over `elbo_images` images.
    pub neg_elbo: f64,
    pub recon: f64,
    pub kl: f64,
    pub elbo_images: usize,
    pub layers: Vec<LayerReport>,
    /// −log p(x) by the IWAE bound with `iwae_k` samples on the first `iwae_images`, nats.
    pub iwae_nll: f64,
    /// The same in bits per pixel: nats / (pixels · ln 2).
    pub bits_per_dim: f64,
    pub iwae_k: usize,
    pub iwae_images: usize,
}

/// The ELBO and the units on every image of `test`, then the IWAE-k bound on the first
/// `settings.iwae_images` (fewer if `test` is shorter).
pub fn evaluate<M: Likelihood + ?Sized>(
    model: &M,
    test: &Split,
    settings: &EvalSettings,
) -> Result<Report> {
    let iwae_images = settings.iwae_images.min(test.len());
    let stream = settings.seed ^ EVAL_STREAM;
    let elbo = elbo(model, test, stream)?;
    let iwae_nll = iwae(model, &test.take(iwae_images), stream ^ 1, settings.k)?;
    Ok(Report {
        bits_per_dim: iwae_nll / (model.pixels() as f64 * std::f64::consts::LN_2),
        iwae_nll,
        iwae_k: settings.k,
        iwae_images,
        ..elbo
    })
}

/// Images `range` of `split` as `[n, pixels]` and their labels.
fn images<'a>(
    engine: &Engine,
    split: &'a Split,
    range: std::ops::Range<usize>,
) -> Result<(Tensor, &'a [u8])> {
    Ok((split.upload(engine, range.clone())?, &split.labels()[range]))
}

/// Draws `k` samples of each image of `x` and checks what the model returned against its
/// declared layers: every tensor `[B·k, units]`, `nll_x` `[B·k]`.
fn checked_sample<M: Likelihood + ?Sized>(
    model: &M,
    x: &Tensor,
    labels: &[u8],
    k: usize,
    noise: &Noise,
) -> Result<Sampled> {
    const OP: &str = "Likelihood::sample_layers";
    let rows = x.shape()[0] * k;
    let s = model.sample_layers(x, labels, k, noise)?;
    s.nll_x.expect_shape(OP, &[rows])?;
    let declared = model.stochastic_layers();
    if s.layers.len() != declared.len() {
        return Err(Error::bad(
            OP,
            format!(
                "returned {} stochastic layers, the model declares {}",
                s.layers.len(),
                declared.len()
            ),
        ));
    }
    for (l, info) in s.layers.iter().zip(&declared) {
        let shape = [rows, info.units];
        for t in [&l.z, &l.eps, &l.mu, &l.logvar] {
            t.expect_shape(OP, &shape)?;
        }
        if let Some((m, v)) = &l.prior {
            m.expect_shape(OP, &shape)?;
            v.expect_shape(OP, &shape)?;
        }
    }
    Ok(s)
}

/// KL(N(μq, σq²) ‖ N(μp, σp²)) of one unit in f64 (the prior N(0, 1) when `p` is `None`).
fn unit_kl(mu_q: f64, logvar_q: f64, p: Option<(f64, f64)>) -> f64 {
    let (mu_p, logvar_p) = p.unwrap_or((0.0, 0.0));
    0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).powi(2)) * (-logvar_p).exp() - 1.0)
}

/// The tensor read back as f64.
fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_vec::<f32>()?.into_iter().map(f64::from).collect())
}

/// Sums per layer over the images: each unit's KL, `E_q[z_u]` and its square.
struct Moments {
    kl: Vec<f64>,
    mean: Vec<f64>,
    square: Vec<f64>,
}

/// −ELBO, recon and each layer's KL and units over every image of `split`, one draw per image
/// from noise stream `seed` (the IWAE fields are left for [`evaluate`] to fill).
fn elbo<M: Likelihood + ?Sized>(model: &M, split: &Split, seed: u64) -> Result<Report> {
    model.set_training(false);
    let n = split.len();
    check_pixels(model, split)?;
    let declared = model.stochastic_layers();
    let mut sums: Vec<Moments> = (declared.iter())
        .map(|l| Moments {
            kl: vec![0.0; l.units],
            mean: vec![0.0; l.units],
            square: vec![0.0; l.units],
        })
        .collect();
    let mut recon = 0.0f64;
    let noise = Noise::new(seed, 0);
    let chunk = model.rows_per_pass().max(1);
    let bar = Progress::new("test -ELBO", n as u64, "images");
    let engine = model.device()?;
    for start in (0..n).step_by(chunk) {
        bar.set(start as u64);
        let (x, labels) = images(&engine, split, start..(start + chunk).min(n))?;
        let s = checked_sample(model, &x, labels, 1, &noise)?;
        recon += host(&s.nll_x)?.iter().sum::<f64>();
        for (l, m) in s.layers.iter().zip(&mut sums) {
            let d = m.kl.len();
            let (mu, lv) = (host(&l.mu)?, host(&l.logvar)?);
            let prior = l
                .prior
                .as_ref()
                .map(|(pm, pv)| Ok::<_, Error>((host(pm)?, host(pv)?)))
                .transpose()?;
            for (i, (&m_q, &v_q)) in mu.iter().zip(&lv).enumerate() {
                let p = prior.as_ref().map(|(pm, pv)| (pm[i], pv[i]));
                m.kl[i % d] += unit_kl(m_q, v_q, p);
                m.mean[i % d] += m_q;
                m.square[i % d] += m_q * m_q;
            }
        }
    }
    bar.finish();
    let nf = n as f64;
    let layers: Vec<LayerReport> = (declared.into_iter().zip(sums))
        .map(|(info, m)| {
            let unit_kl: Vec<f64> = m.kl.iter().map(|k| k / nf).collect();
            let unit_variances: Vec<f64> = (m.mean.iter().zip(&m.square))
                .map(|(s, q)| (q / nf - (s / nf).powi(2)).max(0.0))
                .collect();
            LayerReport {
                name: info.name,
                units: info.units,
                kl: unit_kl.iter().sum(),
                active_units: unit_variances
                    .iter()
                    .filter(|&&v| v > ACTIVE_VARIANCE)
                    .count(),
                kl_units: unit_kl.iter().filter(|&&k| k > KL_UNIT_NATS).count(),
                unit_kl,
                unit_variances,
            }
        })
        .collect();
    let recon = recon / nf;
    let kl = layers.iter().map(|l| l.kl).sum::<f64>();
    if !(recon + kl).is_finite() {
        return Err(Error::bad(
            "elbo",
            format!("the test ELBO came out recon {recon} + KL {kl}: a term is not finite"),
        ));
    }
    Ok(Report {
        neg_elbo: recon + kl,
        recon,
        kl,
        elbo_images: n,
        layers,
        iwae_nll: f64::NAN,
        bits_per_dim: f64::NAN,
        iwae_k: 0,
        iwae_images: 0,
    })
}

fn check_pixels<M: Likelihood + ?Sized>(model: &M, split: &Split) -> Result<()> {
    if split.is_empty() || split.pixels_per_image() != model.pixels() {
        return Err(Error::bad(
            "likelihood",
            format!(
                "{} images of {} pixels for a model of {} pixels",
                split.len(),
                split.pixels_per_image(),
                model.pixels()
            ),
        ));
    }
    Ok(())
}

/// Mean over `split` of −log p(x) ≈ −log (1/k) Σ_j p(x, z_j) / q(z_j | x), z_j ~ q(z | x), with
/// log p and log q summed over every stochastic layer (Burda et al. 2016; conditioned on the
/// labels for a conditional model). Passes of at most [`Likelihood::rows_per_pass`] rows: several
/// images per pass when k is small, several passes per image when k is large; each pass's log
/// weights go through a max-shifted log-sum-exp on the GPU and the passes of an image are
/// combined the same way in f64, so memory stays bounded for any k.
pub fn iwae<M: Likelihood + ?Sized>(model: &M, split: &Split, seed: u64, k: usize) -> Result<f64> {
    model.set_training(false);
    check_pixels(model, split)?;
    if k == 0 {
        return Err(Error::bad("iwae", "needs at least one importance sample"));
    }
    let n = split.len();
    let rows = model.rows_per_pass().max(1);
    let (per_pass, draws) = ((rows / k).max(1), k.min(rows));
    let noise = Noise::new(seed, 0);
    let engine = model.device()?;
    let bar = Progress::new(&format!("IWAE-{k}"), (n * k) as u64, "samples");
    let mut total = 0.0f64;
    for start in (0..n).step_by(per_pass) {
        let (x, labels) = images(&engine, split, start..(start + per_pass).min(n))?;
        let b = x.shape()[0];
        // log Σ_j w_ij of each pass, combined per image below.
        let mut parts: Vec<Vec<f64>> = vec![Vec::new(); b];
        for first in (0..k).step_by(draws) {
            bar.set((start * k + b * first) as u64);
            let m = draws.min(k - first);
            let s = checked_sample(model, &x, labels, m, &noise)?;
            // log w = log p(x | z) + Σ_layers (log p(z_l | ·) − log q(z_l | ·)).
            let mut log_w = ew::affine(&s.nll_x, -1.0, 0.0)?;
            for l in &s.layers {
                let prior = l.prior.as_ref().map(|(m, v)| (m, v));
                let ratio = crate::dist::log_prior_ratio(&l.z, &l.eps, &l.logvar, prior)?;
                log_w = ew::binary(Binary::Add, &log_w, &ratio)?;
            }
            let lse = host(&reduce::logsumexp_last(&log_w.reshape(&[b, m])?)?)?;
            for (p, v) in parts.iter_mut().zip(lse) {
                p.push(v);
            }
        }
        for p in &parts {
            total += (k as f64).ln() - log_sum_exp(p);
        }
    }
    bar.finish();
    let nll = total / n as f64;
    if !nll.is_finite() {
        return Err(Error::bad(
            "iwae",
            format!("the bound came out {nll}: a log weight is not finite"),
        ));
    }
    Ok(nll)
}

/// log Σ exp(v) with the maximum shifted out, in f64.
fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

impl Report {
    /// Adds the figures to `m`: the test −ELBO and its parts, the IWAE bound in nats and
    /// bits/dim with k and the image counts, and per stochastic layer (keys ending in the
    /// layer's name) its KL, unit counts and per-unit figures.
    pub fn add_to(&self, m: &mut Metrics) {
        m.number("test_neg_elbo", self.neg_elbo)
            .number("test_recon", self.recon)
            .number("test_kl", self.kl)
            .integer("elbo_images", self.elbo_images as u64)
            .integer("iwae_k", self.iwae_k as u64)
            .integer("iwae_images", self.iwae_images as u64)
            .number("iwae_nll", self.iwae_nll)
            .number("iwae_bits_per_dim", self.bits_per_dim)
            .integer(
                "active_units",
                self.layers.iter().map(|l| l.active_units as u64).sum(),
            )
            .integer(
                "kl_units",
                self.layers.iter().map(|l| l.kl_units as u64).sum(),
            )
            .text(
                "layers",
                self.layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .numbers("layer_units", self.layers.iter().map(|l| l.units as f64))
            .numbers("layer_kl", self.layers.iter().map(|l| l.kl))
            .numbers(
                "layer_active_units",
                self.layers.iter().map(|l| l.active_units as f64),
            )
            .numbers(
                "layer_kl_units",
                self.layers.iter().map(|l| l.kl_units as f64),
            );
        for l in &self.layers {
            m.numbers(
                &format!("unit_variances_{}", l.name),
                l.unit_variances.iter().copied(),
            )
            .numbers(&format!("unit_kl_{}", l.name), l.unit_kl.iter().copied());
        }
    }

    /// One line: −ELBO, the bound in nats and bits/dim, and each layer's KL and units.
    pub fn summary(&self) -> String {
        let layers: Vec<String> = (self.layers.iter())
            .map(|l| {
                format!(
                    "{} KL {:.2}, {}/{} active, {} carrying KL",
                    l.name, l.kl, l.active_units, l.units, l.kl_units
                )
            })
            .collect();
        format!(
            "test -ELBO {:.2} nats (recon {:.2} + KL {:.2}); IWAE-{} NLL {:.2} nats = {:.4} bits/dim on {} images; {}",
            self.neg_elbo,
            self.recon,
            self.kl,
            self.iwae_k,
            self.iwae_nll,
            self.bits_per_dim,
            self.iwae_images,
            layers.join("; ")
        )
    }
}
