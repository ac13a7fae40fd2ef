//! What the `vqvae` and `vqvae2` examples share: progress lines, prior training with progress,
//! the class-row sample grid and the in-repo judge of class-conditional samples.

use crate::flags;
use latent::data::FashionMnist;
use latent::models::classifier::{Classifier, ClassifierTraining};
use latent::models::pixelcnn::PixelCnn;
use latent::models::prior::{self, CodeMaps, CondFn, PriorTraining};
use latent::{Engine, Error, Result, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A one-line progress bar on stderr, redrawn every 10 steps.
pub fn progress(what: &str, step: usize, steps: usize, since: Instant) {
    if step == steps || step.is_multiple_of(10) {
        let eta = since.elapsed().as_secs_f64() / step as f64 * (steps - step) as f64;
        eprint!("\r  {what}: step {step}/{steps}, {eta:.0} s left   ");
        if step == steps {
            eprint!("\r{:60}\r", "");
        }
        let _ = std::io::stderr().flush();
    }
}

/// Trains `net` on `maps` with a progress line per step and a summary per epoch (`name`).
pub fn train_prior(
    name: &str,
    net: &PixelCnn,
    maps: &CodeMaps,
    cond: &CondFn,
    t: &PriorTraining,
) -> Result<()> {
    let since = std::cell::Cell::new(Instant::now());
    prior::train_prior(net, maps, cond, t, &mut |epoch, i, n| match epoch {
        Some(e) => {
            println!(
                "{name} epoch {}: nll {:.3} bits/code  {:.0} maps/s",
                e.epoch, e.nll_bits, e.maps_per_second
            );
            since.set(Instant::now());
        }
        None => progress(name, i, n, since.get()),
    })
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
}

impl Judged {
    /// The judge's figures as metrics: its test accuracy, the share of the `samples` drawn
    /// that were assigned to their class, overall and per class.
    pub fn add_to(&self, metrics: &mut latent::io::Metrics, samples: usize) {
        metrics
            .number("judge_test_accuracy", self.judge_accuracy)
            .number("sample_accuracy", self.accuracy)
            .numbers("sample_accuracy_per_class", self.per_class.iter().copied())
            .integer("samples", samples as u64);
    }
}

/// Trains the MLP judge on the real training images and classifies `images` `[10·n, 784]`
/// drawn `n` per class in class order.
pub fn judge(
    engine: &Engine,
    data: &FashionMnist,
    images: &Tensor,
    n: usize,
    epochs: u64,
    seed: u64,
) -> Result<Judged> {
    let mut judge = Classifier::new(engine, 784, 10, seed.wrapping_add(11))?;
    let t = ClassifierTraining {
        epochs,
        seed,
        ..Default::default()
    };
    judge.train(&data.train, &t, |e| {
        eprintln!("judge epoch {}: loss {:.4}", e.epoch, e.loss)
    })?;
    let judge_accuracy = judge.accuracy(&data.test)?;
    let predicted = judge.predict(&images.reshape(&[10 * n, 784])?)?;
    let per_class: Vec<f64> = (0..10)
        .map(|c| {
            let hits = predicted[c * n..(c + 1) * n]
                .iter()
                .filter(|&&p| p == c as u32)
                .count();
            hits as f64 / n as f64
        })
        .collect();
    let accuracy = per_class.iter().sum::<f64>() / 10.0;
    println!(
        "judge: {:.1}% on real test images; class-conditional samples assigned to their class: {:.1}%",
        100.0 * judge_accuracy,
        100.0 * accuracy
    );
    Ok(Judged {
        judge_accuracy,
        accuracy,
        per_class,
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

/// Flags every VQ example takes.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Train the model and its priors on the first N training images only, for quick tries
    /// (0: all 60,000; the judge always trains on all of them).
    #[arg(long, default_value_t = 0)]
    pub train_images: usize,
    /// Seed of initialisation, data order and sampling (any integer).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder with the Fashion-MNIST IDX files [default: $LATENT_DATA, else
    /// /usr/share/datasets/fashion-mnist]; a folder named here must exist and hold them.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder for checkpoints, pictures and metrics.json [default: out/<example name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl Common {
    /// The shared flags checked before anything trains (`batch`: the example's `--batch`).
    pub fn validate(&self, batch: usize) -> Result<()> {
        flags::at_least("--batch", batch, 1)?;
        flags::images("--train-images", self.train_images, batch)?;
        flags::data_folder(self.data.as_deref())
    }

    /// The output folder, created.
    pub fn out_dir(&self, example: &str) -> Result<PathBuf> {
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(example));
        std::fs::create_dir_all(&out)
            .map_err(|e| Error::bad("output", format!("cannot create {}: {e}", out.display())))?;
        Ok(out)
    }
}
