//! Trains the feature network (a small conv net with batch norm) on Fashion-MNIST through the
//! one trainer and saves it where every generative example looks for its judge. `--help`.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;

use clap::Parser;
use latent::data::FashionMnist;
use latent::io::Metrics;
use latent::models::feature_net::{Augment, FeatureNetTraining};
use latent::models::fid::{FID_IMAGES, FID_NOTE, FidReference};
use latent::{Engine, Result};

/// Trains the feature network (conv 32 k4 s2, conv 32 k3, conv 64 k4 s2, each with batch norm
/// and ReLU, then 256 hidden units and 10 logits) on Fashion-MNIST and writes to --out
/// feature_net.safetensors (with the data's identity and its test accuracy: the judge and
/// Fréchet-score features of every generative example), loss_curve.svg/.csv and metrics.json
/// (test accuracy, the real-data floor of the Fréchet score).
#[derive(Parser, Debug)]
struct Args {
    /// Training epochs, each one pass over the 60,000 training images (469 steps at batch 128).
    #[arg(long, default_value_t = 10)]
    epochs: u64,
    /// Images per training step (at most 334: the 14×14 conv's weight gradient sums over
    /// batch·196 positions, and lavapipe allows 65,535 loop steps per invocation).
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam learning rate (step size per update).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Largest random shift of a training image, in pixels along each axis, drawn anew each
    /// step with zeros shifted in (0: none; test images are never shifted).
    #[arg(long, default_value_t = 2)]
    shift: usize,
    /// Do not flip training images left to right (by default half of them are, at random).
    #[arg(long)]
    no_flip: bool,
    /// Keep the learning rate at --lr (by default it falls along a half cosine to 0 over the
    /// epochs).
    #[arg(long)]
    constant_lr: bool,
    #[command(flatten)]
    run: shared::RunFlags,
}

impl Args {
    fn validate(&self) -> Result<()> {
        flags::at_least("--epochs", self.epochs as usize, 1)?;
        flags::at_least("--batch", self.batch, 1)?;
        if self.batch > 334 {
            return Err(latent::Error::BadFlag {
                flag: "--batch".into(),
                reason: format!("must be at most 334, got {}", self.batch),
            });
        }
        flags::positive("--lr", self.lr)?;
        if self.shift >= 28 {
            return Err(latent::Error::BadFlag {
                flag: "--shift".into(),
                reason: format!("must be below the image side 28, got {}", self.shift),
            });
        }
        flags::data_folder(self.run.data.as_deref())
    }
}

fn run(a: &Args) -> Result<()> {
    let out = shared::output_folder(a.run.out.as_deref(), "classifier")?;
    let engine = Engine::new()?;
    eprintln!("adapter: {}", engine.summary());
    let data = FashionMnist::load(a.run.data.as_deref())?;
    let training = FeatureNetTraining {
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        seed: a.run.seed,
        augment: Augment {
            max_shift: a.shift,
            flip: !a.no_flip,
        },
        cosine: !a.constant_lr,
    };
    let checkpoint = out.join("checkpoint.safetensors");
    if !a.run.resume && checkpoint.exists() {
        std::fs::remove_file(&checkpoint).map_err(|source| latent::Error::Io {
            action: "remove the previous run's checkpoint",
            path: checkpoint.clone(),
            source,
        })?;
    }
    let start = std::time::Instant::now();
    let mut curves = shared::Curves::default();
    let (net, accuracy) =
        shared::train_feature_net(&engine, &data, &training, Some(&checkpoint), &mut curves)?;
    let seconds = start.elapsed().as_secs_f64();
    let identity = shared::data_identity(&data, &data.train);
    let path = out.join("feature_net.safetensors");
    net.save(&path, &identity, accuracy)?;
    curves.write(
        &out,
        "loss_curve",
        "feature network: training cross entropy per step (batch means)",
        "nats per image",
    )?;
    let reference = FidReference::new(&net, &data.train, &data.test, FID_IMAGES)?;
    let mut m = Metrics::new("feature-net");
    m.integer("epochs", a.epochs)
        .integer("batch", a.batch as u64)
        .number("lr", a.lr)
        .flag("lr_cosine", !a.constant_lr)
        .integer("seed", a.run.seed)
        .integer("augment_max_shift", a.shift as u64)
        .flag("augment_flip", !a.no_flip)
        .number("test_accuracy", accuracy)
        .number("train_seconds", seconds)
        .number("fid_real_floor", reference.floor)
        .integer("fid_real_images", FID_IMAGES as u64)
        .text("fid_note", FID_NOTE);
    latent::io::write_metrics(out.join("metrics.json"), &m)?;
    println!(
        "test accuracy {:.2} % after {} epochs ({seconds:.0} s); Fréchet score of {FID_IMAGES} real training images against the test set: {:.3} ({FID_NOTE}); saved {}",
        100.0 * accuracy,
        a.epochs,
        reference.floor,
        path.display()
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    shared::exit_on_error("classifier", args.validate().and_then(|_| run(&args)));
}
