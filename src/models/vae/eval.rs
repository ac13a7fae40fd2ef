//! Evaluating and picturing the VAE: test −ELBO, the IWAE-k NLL, active units, reconstructions,
//! prior samples, the 2-D manifold and latent scatter, and for a CVAE the class rows and style
//! transfer. Tests: `tests/vae.rs`.

use super::train::TrainSettings;
use super::{Autoencoder, one_hot};
use crate::data::Split;
use crate::engine::{Error, Result, Tensor};
use crate::io;
use crate::kernels::random;
use crate::models::feature_net::FeatureNet;
use crate::models::likelihood::{self, EVAL_STREAM};
use std::path::Path;

/// Test-set figures of a trained model.
#[derive(Clone, Debug)]
pub struct Report {
    /// The test −ELBO (conditional for a CVAE), the IWAE-k bound and the latent units.
    pub likelihood: likelihood::Report,
    /// For a conditional model judged by a classifier: the classifier's accuracy on the test
    /// images and how often prior samples were assigned to their label (set by the caller).
    pub judge_accuracy: Option<f64>,
    pub sample_accuracy: Option<SampleAccuracy>,
    /// The Fréchet score of prior samples (set by the caller that has a feature network).
    pub fid: Option<crate::models::fid::Fid>,
}

/// Images `range` of `split` as [n, pixels], with their one-hot labels when `vae` is conditional.
fn batch(
    vae: &dyn Autoencoder,
    split: &Split,
    range: std::ops::Range<usize>,
) -> Result<(Tensor, Option<Tensor>)> {
    let x = split.upload(vae.engine(), range.clone())?;
    Ok((x, vae.condition(&split.labels()[range])?))
}

/// Writes reconstructions (rows labelled "original" / "reconstruction"), prior samples (for a
/// CVAE one row per class, labelled by `class_names[class]`, plus the style-transfer grid: each
/// test image re-decoded with every label) as PNGs, and for a 2-D latent space the latent
/// manifold (PNG) and `latent_scatter.svg`, the test means coloured by class with the class
/// names in its legend, all in `out`.
pub fn draw(
    vae: &dyn Autoencoder,
    test: &Split,
    class_names: &[&str],
    out: &Path,
    seed: u64,
) -> Result<()> {
    vae.set_training(false);
    let engine = vae.engine().clone();
    let (pixels, d, classes) = (vae.dims().input, vae.dims().latent, vae.dims().classes);
    let side = (pixels as f64).sqrt() as usize;
    // Reconstructions: rows of 8 test images, each followed by its reconstruction at z = μ.
    let (x, c) = batch(vae, test, 0..32)?;
    let rec = vae
        .mean_images(&vae.encode_means(&x, c.as_ref())?, c.as_ref())?
        .to_vec::<f32>()?;
    let title = "test images and their reconstructions at z = mu";
    io::save_reconstructions(out, test.images(), &rec, side, title)?;
    if classes == 0 {
        let z = random::normal(&engine, &[64, d], seed ^ EVAL_STREAM ^ 2, 0)?;
        io::save_grid(
            out.join("samples.png"),
            &vae.mean_images(&z, None)?.to_vec::<f32>()?,
            8,
            side,
            side,
            2,
        )?;
    } else {
        // Row y holds 10 samples of class y; column j uses the same z in every row.
        let z = random::normal(&engine, &[10, d], seed ^ EVAL_STREAM ^ 2, 0)?;
        let z_host = z.to_vec::<f32>()?;
        let zs: Vec<f32> = (0..classes).flat_map(|_| z_host.iter().copied()).collect();
        let labels: Vec<u8> = (0..classes)
            .flat_map(|y| std::iter::repeat_n(y as u8, 10))
            .collect();
        let img = vae.mean_images(
            &Tensor::from_slice(&engine, &zs, &[classes * 10, d])?,
            Some(&one_hot(&engine, &labels, classes)?),
        )?;
        if class_names.len() < classes {
            return Err(Error::bad(
                "draw",
                format!("{} class names for {classes} classes", class_names.len()),
            ));
        }
        let labels = io::GridLabels {
            title: Some("prior samples per class (one z per column)"),
            rows: &class_names[..classes],
        };
        io::save_labelled_grid(
            out.join("samples_by_class.png"),
            &img.to_vec::<f32>()?,
            classes,
            (side, side),
            2,
            labels,
        )?;
        let labels = io::GridLabels {
            title: Some("input, then as class 0-9"),
            rows: &[],
        };
        io::save_labelled_grid(
            out.join("style_transfer.png"),
            &style_transfer(vae, test, 8)?,
            8,
            (side, side),
            2,
            labels,
        )?;
    }
    if d == 2 {
        // The manifold: decoded means over a 20×20 grid of normal quantiles (first class for a CVAE).
        let q: Vec<f32> = (0..20)
            .map(|i| normal_quantile(0.05 + 0.9 * i as f64 / 19.0) as f32)
            .collect();
        let zs: Vec<f32> = (0..400).flat_map(|i| [q[i % 20], q[19 - i / 20]]).collect();
        let z = Tensor::from_slice(&engine, &zs, &[400, 2])?;
        let c = (classes > 0)
            .then(|| one_hot(&engine, &[0; 400], classes))
            .transpose()?;
        let names: Vec<String> = (0..20).map(|r| format!("z2 {:+.2}", q[19 - r])).collect();
        let rows: Vec<&str> = names.iter().map(String::as_str).collect();
        io::save_labelled_grid(
            out.join("manifold.png"),
            &vae.mean_images(&z, c.as_ref())?.to_vec::<f32>()?,
            20,
            (side, side),
            1,
            io::GridLabels {
                title: Some(&format!(
                    "decoded means; z1 from {:+.2} (left) to {:+.2} (right)",
                    q[0], q[19]
                )),
                rows: &rows,
            },
        )?;
        let mut points = Vec::with_capacity(test.len());
        for start in (0..test.len()).step_by(1000) {
            let (x, c) = batch(vae, test, start..(start + 1000).min(test.len()))?;
            let mu = vae.encode_means(&x, c.as_ref())?.to_vec::<f32>()?;
            points.extend(mu.chunks(2).map(|p| (p[0], p[1])));
        }
        let labels = io::Labels {
            title: "posterior means of the test images",
            x: "mu[0]",
            y: "mu[1]",
        };
        io::scatter_svg(
            out.join("latent_scatter.svg"),
            labels,
            &points,
            test.labels(),
            class_names,
        )?;
    }
    Ok(())
}

/// For the first `n` test images: the image, then its decoding at z = μ(x, y) under every label
/// (analogy / style transfer of a CVAE), as n rows of 1 + classes images.
pub fn style_transfer(vae: &dyn Autoencoder, test: &Split, n: usize) -> Result<Vec<f32>> {
    vae.set_training(false);
    let engine = vae.engine().clone();
    let (pixels, d, classes) = (vae.dims().input, vae.dims().latent, vae.dims().classes);
    let (x, c) = batch(vae, test, 0..n)?;
    let mu = vae.encode_means(&x, c.as_ref())?.to_vec::<f32>()?;
    let zs: Vec<f32> = (0..n)
        .flat_map(|i| (0..classes).flat_map(move |_| (0..d).map(move |j| (i, j))))
        .map(|(i, j)| mu[i * d + j])
        .collect();
    let labels: Vec<u8> = (0..n).flat_map(|_| 0..classes as u8).collect();
    let img = vae
        .mean_images(
            &Tensor::from_slice(&engine, &zs, &[n * classes, d])?,
            Some(&one_hot(&engine, &labels, classes)?),
        )?
        .to_vec::<f32>()?;
    let mut grid = Vec::with_capacity(n * (classes + 1) * pixels);
    for i in 0..n {
        grid.extend_from_slice(test.image(i));
        grid.extend_from_slice(&img[i * classes * pixels..(i + 1) * classes * pixels]);
    }
    Ok(grid)
}

/// How often a conditional model's samples are classified as the class they were drawn for.
#[derive(Clone, Debug)]
pub struct SampleAccuracy {
    /// Fraction of all samples assigned to their label.
    pub overall: f64,
    /// The same per class.
    pub per_class: Vec<f64>,
    pub per_class_samples: usize,
    /// Prior samples z ~ N(0, t²·I); 1 is the model's prior.
    pub temperature: f32,
}

/// Draws `per_class` latents z ~ N(0, temperature²·I) for every class, decodes them under that
/// label to the decoder's mean images and lets `judge` classify them (decoded in chunks of 500).
pub fn sample_accuracy(
    vae: &dyn Autoencoder,
    judge: &FeatureNet,
    per_class: usize,
    temperature: f32,
    seed: u64,
) -> Result<SampleAccuracy> {
    vae.set_training(false);
    let engine = vae.engine().clone();
    let (d, classes) = (vae.dims().latent, vae.dims().classes);
    if classes == 0 || classes != judge.config.classes || per_class == 0 {
        return Err(Error::bad(
            "sample_accuracy",
            format!(
                "needs a conditional model with the judge's classes and samples, got {classes} classes, a judge of {}, {per_class} samples per class",
                judge.config.classes
            ),
        ));
    }
    let labels: Vec<u8> = (0..classes)
        .flat_map(|y| std::iter::repeat_n(y as u8, per_class))
        .collect();
    let z = crate::kernels::elementwise::affine(
        &random::normal(&engine, &[labels.len(), d], seed ^ EVAL_STREAM ^ 3, 0)?,
        temperature,
        0.0,
    )?;
    let mut right = vec![0usize; classes];
    for start in (0..labels.len()).step_by(500) {
        let end = (start + 500).min(labels.len());
        let zc = crate::kernels::layout::slice(&z, 0, start..end)?;
        let c = one_hot(&engine, &labels[start..end], classes)?;
        let guesses = judge.predict(&vae.mean_images(&zc, Some(&c))?)?;
        for (&g, &y) in guesses.iter().zip(&labels[start..end]) {
            right[y as usize] += (g == y as u32) as usize;
        }
    }
    Ok(SampleAccuracy {
        overall: right.iter().sum::<usize>() as f64 / labels.len() as f64,
        per_class: right.iter().map(|&r| r as f64 / per_class as f64).collect(),
        per_class_samples: per_class,
        temperature,
    })
}

/// `n` prior samples as the decoder's mean images `[n, input]`: z ~ N(0, I) from a stream of
/// its own, decoded in chunks of 500; a conditional model's sample i is drawn for class
/// i mod classes (equal shares). What the Fréchet score of a VAE is computed on.
pub fn prior_samples(vae: &dyn Autoencoder, n: usize, seed: u64) -> Result<Tensor> {
    vae.set_training(false);
    let engine = vae.engine().clone();
    let (pixels, d, classes) = (vae.dims().input, vae.dims().latent, vae.dims().classes);
    if n == 0 {
        return Err(Error::bad("prior_samples", "needs at least one sample"));
    }
    let z = random::normal(&engine, &[n, d], seed ^ EVAL_STREAM ^ 4, 0)?;
    let mut out = Vec::with_capacity(n * pixels);
    for start in (0..n).step_by(500) {
        let end = (start + 500).min(n);
        let zc = crate::kernels::layout::slice(&z, 0, start..end)?;
        let c = match classes {
            0 => None,
            k => {
                let labels: Vec<u8> = (start..end).map(|i| (i % k) as u8).collect();
                Some(one_hot(&engine, &labels, k)?)
            }
        };
        out.extend(vae.mean_images(&zc, c.as_ref())?.to_vec::<f32>()?);
    }
    Tensor::from_slice(&engine, &out, &[n, pixels])
}

/// Φ⁻¹(p) by Acklam's rational approximation (relative error < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

impl Report {
    /// The figures for metrics.json, after the settings that produced them; `model` names the
    /// model (`vae`, `cvae`, `conv_vae`).
    pub fn metrics(&self, model: &str, s: &TrainSettings, epochs: u64, steps: u64) -> io::Metrics {
        let mut m = io::Metrics::new(model);
        m.integer("epochs", epochs)
            .integer("steps", steps)
            .integer("batch", s.batch as u64)
            .number("lr", s.lr)
            .number("beta", s.beta as f64)
            .integer("warmup", s.warmup)
            .integer("seed", s.seed)
            .text("objective", format!("{:?}", s.objective))
            .flag("binarize", s.binarize);
        self.likelihood.add_to(&mut m);
        if let Some(a) = self.judge_accuracy {
            m.number("judge_test_accuracy", a);
        }
        if let Some(a) = &self.sample_accuracy {
            m.number("sample_accuracy", a.overall)
                .numbers("sample_accuracy_per_class", a.per_class.iter().copied())
                .integer("samples_per_class", a.per_class_samples as u64)
                .number("sample_temperature", a.temperature as f64);
        }
        if let Some(f) = &self.fid {
            f.add_to(&mut m);
        }
        m
    }
}
