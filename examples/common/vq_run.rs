//! What the `vqvae` and `vqvae2` examples share: prior training through the one trainer,
//! the class-row sample grid and the in-repo judge of class-conditional samples.

use latent::data::{FashionMnist, Split};
use latent::models::pixelcnn::{PixelCnn, bits};
use latent::models::prior::{CodeMaps, Prior, PriorTraining};
use latent::models::vqvae::{VqModel, VqTraining};
use latent::optim::{TrainConfig, Trainer};

pub use crate::shared::Common;
use latent::{Engine, Result, Tensor};
use std::path::Path;

/// Trains `prior` on `maps` through the one trainer, a progress bar per epoch and a summary
/// line after each (`name`), checkpointing to `path` every epoch; returns the trained network.
pub fn train_prior(
    name: &str,
    prior: Prior,
    maps: &CodeMaps,
    t: &PriorTraining,
    path: &Path,
    resume: bool,
) -> Result<PixelCnn> {
    let config = TrainConfig {
        checkpoint: Some(path.to_path_buf()),
        name: name.to_string(),
        ..t.config(
            maps.len(),
            format!("{name} code maps: {} of {}x{}", maps.len(), maps.h, maps.w),
        )
    };
    let mut trainer = crate::shared::start(prior, config, maps.len(), resume && path.exists())?;
    let mut curves = crate::shared::Curves::default();
    while trainer.epoch < t.epochs {
        let e = trainer.train_epoch(maps)?;
        curves.push(&e);
        println!(
            "{name} epoch {}: nll {:.3} bits/code  {:.0} maps/s",
            e.epoch,
            bits(e.term("nll") as f32),
            e.images_per_second
        );
    }
    // Beside the checkpoint: `prior_loss_curve.svg`, `top_prior_loss_curve.csv`, …
    let stem = format!("{}_loss_curve", name.replace(' ', "_"));
    let title = format!("{name}: training NLL per step (batch means)");
    let folder = path.parent().unwrap_or(Path::new("."));
    curves.write(folder, &stem, &title, "nats per code")?;
    Ok(trainer.model.net)
}

/// A run of VQ model `model` on `train` through the one trainer: Adam at `lr`, the last partial
/// batch dropped, a checkpoint `<out>/<name>.safetensors` after every epoch.
pub fn vq_trainer<M: VqModel>(
    model: M,
    name: &str,
    (data, train): (&FashionMnist, &Split),
    (batch, lr, seed): (usize, f64, u64),
    out: &Path,
    resume: bool,
) -> Result<Trainer<VqTraining<M>>> {
    let config = TrainConfig {
        checkpoint: Some(out.join(format!("{name}.safetensors"))),
        name: name.into(),
        ..VqTraining::<M>::config(batch, lr, seed, crate::shared::data_identity(data, train))
    };
    crate::shared::start(VqTraining::new(model, train), config, train.len(), resume)
}

/// Labels 0..10, `n` of each, in order (the sample set's classes).
pub fn class_labels(n: usize) -> Vec<u32> {
    (0..10u32).flat_map(|c| std::iter::repeat_n(c, n)).collect()
}

/// Writes the first 10 images of each class's `n` (images `[10·n, 28, 28]`) as one row per class,
/// each row labelled with its class name.
pub fn save_class_rows(path: &Path, pixels: &[f32], n: usize) -> Result<()> {
    let grid: Vec<f32> = (0..10)
        .flat_map(|c| pixels[c * n * 784..(c * n + 10) * 784].to_vec())
        .collect();
    let labels = latent::io::GridLabels {
        title: Some("prior samples per class"),
        rows: &latent::data::CLASS_NAMES,
    };
    latent::io::save_labelled_grid(path, &grid, 10, (28, 28), 1, labels)
}

/// How the judge saw the samples.
pub struct Judged {
    /// The judge's accuracy on the real test images.
    pub judge_accuracy: f64,
    /// Share of samples assigned to the class they were drawn for, overall and per class.
    pub accuracy: f64,
    pub per_class: Vec<f64>,
    /// Samples judged.
    pub samples: usize,
    /// The Fréchet score of the same samples.
    pub fid: latent::models::fid::Fid,
}

impl Judged {
    /// The judge's figures as metrics: its test accuracy, the share of the samples drawn that
    /// were assigned to their class, overall and per class, and their Fréchet score.
    pub fn add_to(&self, metrics: &mut latent::io::Metrics) {
        metrics
            .number("judge_test_accuracy", self.judge_accuracy)
            .number("sample_accuracy", self.accuracy)
            .numbers("sample_accuracy_per_class", self.per_class.iter().copied())
            .integer("samples", self.samples as u64);
        self.fid.add_to(metrics);
    }
}

/// Class-conditional samples in rounds, judged: round r (seed offset r) draws `n` per class in
/// class order through `draw(r)` (images `[10·n, 784]`) until `total` images (whole rounds, at
/// least one) are drawn; the first round's first 10 per class go to `out`/samples_by_class.png,
/// and all of them to [`judge`] (the judged share and the Fréchet score).
pub fn sample_and_judge(
    engine: &Engine,
    data: &FashionMnist,
    (out, judge_path): (&Path, &Path),
    (total, n): (usize, usize),
    mut draw: impl FnMut(u64) -> Result<Tensor>,
) -> Result<Judged> {
    let rounds = total.div_ceil(10 * n).max(1);
    let since = std::time::Instant::now();
    let progress = latent::io::Progress::new("sampling", (rounds * 10 * n) as u64, "img");
    let mut pixels = Vec::with_capacity(rounds * 10 * n * 784);
    for r in 0..rounds {
        progress.set((r * 10 * n) as u64);
        pixels.extend(draw(r as u64)?.to_vec::<f32>()?);
    }
    progress.finish();
    eprintln!(
        "sampled {} images in {rounds} rounds of {} in {:.1} s",
        rounds * 10 * n,
        10 * n,
        since.elapsed().as_secs_f64()
    );
    save_class_rows(&out.join("samples_by_class.png"), &pixels, n)?;
    let images = Tensor::from_slice(engine, &pixels, &[rounds * 10 * n, 784])?;
    judge(engine, data, &images, n, judge_path)
}

/// Loads (or trains once and caches) the feature network at `judge`, classifies `images`
/// `[R·10·n, 784]`, drawn in R rounds of `n` per class in class order (see [`sample_and_judge`]),
/// and gives the Fréchet score of all of them against the test images.
pub fn judge(
    engine: &Engine,
    data: &FashionMnist,
    images: &Tensor,
    n: usize,
    judge: &Path,
) -> Result<Judged> {
    let scorer = crate::shared::Scorer::new(engine, data, judge)?;
    let rows = images.shape()[0];
    if n == 0 || rows == 0 || !rows.is_multiple_of(10 * n) {
        let why = format!("needs whole rounds of 10 × {n} samples, got {rows}");
        return Err(latent::Error::bad("vq_run::judge", why));
    }
    let predicted = scorer.net.predict(images)?;
    let mut hits = [0usize; 10];
    for (i, &p) in predicted.iter().enumerate() {
        let class = (i / n) % 10;
        hits[class] += (p == class as u32) as usize;
    }
    let per_class: Vec<f64> = hits
        .iter()
        .map(|&h| h as f64 / (rows / 10) as f64)
        .collect();
    let accuracy = per_class.iter().sum::<f64>() / 10.0;
    println!(
        "judge: {:.1}% on real test images; {rows} class-conditional samples assigned to their class: {:.1}%",
        100.0 * scorer.accuracy,
        100.0 * accuracy
    );
    Ok(Judged {
        judge_accuracy: scorer.accuracy,
        accuracy,
        per_class,
        samples: rows,
        fid: scorer.fid(images)?,
    })
}

/// Writes `metrics` to `out`/metrics.json (refused whole if a figure is not finite) and says
/// where the outputs went.
pub fn write_metrics(out: &Path, metrics: &latent::io::Metrics) -> Result<()> {
    latent::io::write_metrics(out.join("metrics.json"), metrics)?;
    println!(
        "wrote {} (checkpoints, pictures, metrics.json)",
        out.display()
    );
    Ok(())
}
