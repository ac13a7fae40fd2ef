//! Checks of command-line flags that every example runs right after parsing, before it opens a
//! device or trains: each failure is `latent::Error::BadFlag` naming the flag and the rule.
// Each example uses some of these.
#![allow(dead_code)]

use latent::data::{FashionMnist, Split};
use latent::models::likelihood::{self, EvalSettings};
use latent::{Engine, Error, Result};
use std::path::Path;

fn bad(flag: &str, reason: String) -> Error {
    Error::BadFlag {
        flag: flag.to_string(),
        reason,
    }
}

/// `value` ≥ `min` (counts: epochs, images, channels, codes…).
pub fn at_least(flag: &str, value: usize, min: usize) -> Result<()> {
    match value >= min {
        true => Ok(()),
        false => Err(bad(flag, format!("must be at least {min}, got {value}"))),
    }
}

/// A finite `value` > 0 (learning rates, temperatures, scales).
pub fn positive(flag: &str, value: f64) -> Result<()> {
    match value.is_finite() && value > 0.0 {
        true => Ok(()),
        false => Err(bad(
            flag,
            format!("must be a finite number above 0, got {value}"),
        )),
    }
}

/// A finite `value` ≥ 0 (loss weights).
pub fn non_negative(flag: &str, value: f64) -> Result<()> {
    match value.is_finite() && value >= 0.0 {
        true => Ok(()),
        false => Err(bad(
            flag,
            format!("must be a finite number of at least 0, got {value}"),
        )),
    }
}

/// An image count such as `--train-images N`: 0 (all) or enough for one batch of `batch`.
pub fn images(flag: &str, value: usize, batch: usize) -> Result<()> {
    match value == 0 || value >= batch {
        true => Ok(()),
        false => Err(bad(
            flag,
            format!("must be 0 (all images) or at least one batch (--batch {batch}), got {value}"),
        )),
    }
}

/// A file flag (`--vqvae`, `--prior`, …): the path must name an existing file; what it holds
/// is checked when the example loads it, before any training.
pub fn existing_file(flag: &str, path: Option<&Path>) -> Result<()> {
    match path {
        Some(p) if !p.is_file() => Err(bad(
            flag,
            format!("names `{}`, which is not an existing file", p.display()),
        )),
        _ => Ok(()),
    }
}

/// `--data DIR` (or `$LATENT_DATA`): the folder must exist and hold the data files; a named
/// folder is never replaced by the system copy.
pub fn data_folder(dir: Option<&Path>) -> Result<()> {
    latent::data::FashionMnist::resolve(dir).map(|_| ())
}

/// The benchmark protocol every VAE example shares (`#[command(flatten)]`): dynamic
/// binarisation and the importance-weighted bound on the test NLL.
#[derive(clap::Args, Clone, Debug)]
pub struct Protocol {
    /// Binarise pixels to 0/1 with probability = grey value: the training images afresh each
    /// epoch, the test images once with a fixed seed (the same for every model and run).
    #[arg(long)]
    pub binarize: bool,
    /// Importance samples per test image for the IWAE bound on -log p(x), nats (1000: the
    /// papers' protocol; 5000 tightens it at 5 times the time).
    #[arg(long, default_value_t = likelihood::DEFAULT_K)]
    pub iwae_k: usize,
    /// Test images in the IWAE estimate (the first N of the test set).
    #[arg(long, default_value_t = likelihood::DEFAULT_IMAGES)]
    pub iwae_images: usize,
}

impl Protocol {
    pub fn validate(&self) -> Result<()> {
        at_least("--iwae-k", self.iwae_k, 1)?;
        at_least("--iwae-images", self.iwae_images, 1)
    }

    /// The evaluator's settings for a run seeded with `seed`.
    pub fn settings(&self, seed: u64) -> EvalSettings {
        EvalSettings {
            k: self.iwae_k,
            iwae_images: self.iwae_images,
            seed,
        }
    }

    /// The test images as the models are scored on them: binarised once with the fixed test
    /// seed under `--binarize`, else the grey values.
    pub fn test_split(&self, engine: &Engine, data: &FashionMnist) -> Result<Split> {
        match self.binarize {
            true => latent::data::binarized(engine, &data.test, latent::data::TEST_SEED),
            false => Ok(data.test.clone()),
        }
    }
}
