//! Adversarial autoencoder on Fashion-MNIST (Makhzani et al. 2015): reconstruction,
//! discriminator and generator phases through the one trainer; priors N(0, I), a mixture of
//! ten 2-D Gaussians or a swiss roll; optionally the label into the decoder. `--help`.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;

use clap::{Parser, ValueEnum};
use latent::Result;
use latent::data::{CLASS_NAMES, DeviceSplit, FashionMnist, Split};
use latent::models::aae::{self, Aae, AaeConfig, Posterior, PriorKind};
use latent::nn::Module;
use latent::optim::Trainable;
use latent::{Engine, Tensor};
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PosteriorArg {
    /// z = f(x).
    Deterministic,
    /// z ~ N(μ(x), σ²(x)), drawn by the reparameterisation trick.
    Gaussian,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PriorArg {
    /// N(0, I) in --latent dimensions.
    Normal,
    /// Ten 2-D Gaussians (σ 0.5) on a circle of radius 4 (needs --latent 2).
    Mixture,
    /// A 2-D swiss roll (needs --latent 2).
    SwissRoll,
}

/// Trains an adversarial autoencoder on Fashion-MNIST and writes to --out the checkpoint, the
/// loss curves (aae_loss_curve.svg/.csv), reconstructions.png, samples.png (decoded prior
/// draws; with --supervised one style per column across the ten classes), with a 2-D latent
/// latent_codes.svg (the test codes by class over prior draws) and metrics.json (with the N(0, I)
/// prior the Kolmogorov–Smirnov statistic of every code dimension against N(0, 1)).
#[derive(Parser, Debug)]
struct Args {
    /// Training epochs, each one pass over the training images (468 steps of 3 phases at
    /// batch 128). With the deterministic encoder the discriminator kept shaping the codes: the
    /// largest Kolmogorov–Smirnov statistic of a code dimension against N(0, 1) fell from 0.134
    /// after 4 epochs to 0.081 after 8 and 0.063 after 16; the Gaussian posterior's was 0.033
    /// after 8.
    #[arg(long, default_value_t = 8)]
    epochs: u64,
    /// Images per training step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam learning rate of the reconstruction phase (step size per update).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Adam learning rate of the discriminator and generator phases (β₁ = 0.5; step size per
    /// update).
    #[arg(long, default_value_t = 5e-4)]
    adv_lr: f64,
    /// Dimensions of z (2 also draws latent_codes.svg; the mixture and swiss roll need 2).
    #[arg(long, default_value_t = 8)]
    latent: usize,
    /// The prior p(z) the discriminator holds the codes to.
    #[arg(long, value_enum, default_value_t = PriorArg::Normal)]
    prior: PriorArg,
    /// How the encoder makes z (§2.1 of the paper). With `gaussian` the test codes scored
    /// against the prior are one draw of q(z|x) per image, and the reconstructions decode μ(x).
    #[arg(long, value_enum, default_value_t = PosteriorArg::Gaussian)]
    posterior: PosteriorArg,
    /// The decoder also reads the one-hot label, so z keeps the style only (§5 of the paper).
    #[arg(long)]
    supervised: bool,
    /// Prior samples scored by the Fréchet score on the feature network's penultimate layer
    /// (images; 0: no score).
    #[arg(long, default_value_t = latent::models::fid::FID_IMAGES)]
    fid_samples: usize,
    /// Width of the discriminator's two hidden layers (units).
    #[arg(long, default_value_t = 256)]
    disc_hidden: usize,
    #[command(flatten)]
    common: shared::Common,
}

impl Args {
    /// Every flag checked before the device is opened or anything trains.
    fn validate(&self) -> Result<()> {
        self.common.validate(self.batch)?;
        flags::positive("--lr", self.lr)?;
        flags::positive("--adv-lr", self.adv_lr)?;
        flags::at_least("--latent", self.latent, 1)?;
        flags::at_least("--disc-hidden", self.disc_hidden, 1)?;
        shared::fid_samples_flag(self.fid_samples)?;
        if self.prior().0 != PriorKind::Normal && self.latent != 2 {
            return Err(latent::Error::BadFlag {
                flag: "--latent".into(),
                reason: format!(
                    "must be 2 with the {} prior, got {}",
                    self.prior().1,
                    self.latent
                ),
            });
        }
        Ok(())
    }

    fn prior(&self) -> (PriorKind, &'static str) {
        match self.prior {
            PriorArg::Normal => (PriorKind::Normal, "N(0, I)"),
            PriorArg::Mixture => (PriorKind::Mixture, "mixture of 10 Gaussians"),
            PriorArg::SwissRoll => (PriorKind::SwissRoll, "swiss roll"),
        }
    }

    fn config(&self) -> AaeConfig {
        AaeConfig {
            latent: self.latent,
            classes: if self.supervised { 10 } else { 0 },
            disc_hidden: self.disc_hidden,
            prior: self.prior().0,
            posterior: match self.posterior {
                PosteriorArg::Deterministic => Posterior::Deterministic,
                PosteriorArg::Gaussian => Posterior::Gaussian,
            },
        }
    }
}

/// Test images encoded in batches: codes `[N, latent]` (draws of q(z|x), Philox stream `seed`)
/// and reconstructions `[N, 784]` (of the codes' means).
fn encode_split(model: &Aae, split: &Split, seed: u64) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mut codes, mut recon) = (Vec::new(), Vec::new());
    let progress = latent::io::Progress::new("encoding the test images", split.len() as u64, "img");
    let engine = model.engine();
    for start in (0..split.len()).step_by(500) {
        progress.set(start as u64);
        let n = 500.min(split.len() - start);
        let x = Tensor::from_slice(
            engine,
            &split.images()[start * 784..(start + n) * 784],
            &[n, 784],
        )?;
        let offset = latent::kernels::random::blocks(start * model.config.latent);
        codes.extend(model.sample_codes(&x, seed, offset)?.to_vec::<f32>()?);
        let labels = &split.labels()[start..start + n];
        recon.extend(model.generate(&model.codes(&x)?, labels)?.to_vec::<f32>()?);
    }
    progress.finish();
    Ok((codes, recon))
}

/// samples.png: 100 decoded prior draws, or with labels one draw per column decoded under each
/// class (rows labelled by class).
fn save_samples(model: &Aae, a: &Args, out: &Path) -> Result<Vec<f32>> {
    let d = a.latent;
    let engine = model.engine();
    let (z, labels, rows, title): (Vec<f32>, Vec<u8>, &[&str], _) = if a.supervised {
        let styles = a.config().prior.sample(10, d, a.common.run.seed ^ 0x5A)?;
        let z = (0..10).flat_map(|_| styles.clone()).collect();
        let labels = (0..10u8).flat_map(|c| [c; 10]).collect();
        let title = "one style z per column, decoded under each class";
        (z, labels, &CLASS_NAMES, title)
    } else {
        let z = a.config().prior.sample(100, d, a.common.run.seed ^ 0x5A)?;
        (z, Vec::new(), &[], "decoded draws from the prior")
    };
    let n = z.len() / d;
    let pixels = model
        .generate(&Tensor::from_slice(engine, &z, &[n, d])?, &labels)?
        .to_vec::<f32>()?;
    let labels = latent::io::GridLabels {
        title: Some(title),
        rows,
    };
    latent::io::save_labelled_grid(out.join("samples.png"), &pixels, 10, (28, 28), 1, labels)?;
    Ok(pixels)
}

/// `n` decoded prior draws `[n, 784]` (labels cycling through the classes when supervised),
/// decoded 500 at a time.
fn prior_samples(model: &Aae, a: &Args, n: usize) -> Result<Tensor> {
    let d = a.latent;
    let z = a.config().prior.sample(n, d, a.common.run.seed ^ 0xF1D)?;
    let mut pixels = Vec::with_capacity(n * 784);
    for start in (0..n).step_by(500) {
        let m = 500.min(n - start);
        let zs = Tensor::from_slice(model.engine(), &z[start * d..(start + m) * d], &[m, d])?;
        let labels: Vec<u8> = match a.supervised {
            true => (start..start + m).map(|i| (i % 10) as u8).collect(),
            false => Vec::new(),
        };
        pixels.extend(model.generate(&zs, &labels)?.to_vec::<f32>()?);
    }
    Tensor::from_slice(model.engine(), &pixels, &[n, 784])
}

fn run(a: Args) -> Result<()> {
    let start = Instant::now();
    let out = a.common.out_dir("aae")?;
    let engine = Engine::new()?;
    eprintln!("adapter: {}", engine.summary());
    let data = FashionMnist::load(a.common.run.data.as_deref())?;
    let train = match a.common.train_images {
        0 => data.train.clone(),
        n => data.train.take(n),
    };
    let model = Aae::new(&engine, a.config(), a.common.run.seed)?;
    let config = latent::optim::TrainConfig {
        checkpoint: Some(out.join("aae.safetensors")),
        ..aae::train_config(
            a.batch,
            (a.lr, a.adv_lr),
            a.common.run.seed,
            shared::data_identity(&data, &train),
        )
    };
    let mut t = shared::start(model, config, train.len(), a.common.run.resume)?;
    let mut curves = shared::Curves::default();
    // The training images on the device: each step gathers its batch there, uploading nothing.
    let on_device = DeviceSplit::new(&engine, &train)?;
    while t.epoch < a.epochs {
        let s = t.train_epoch(&on_device)?;
        curves.push(&s);
        println!(
            "aae epoch {}: recon {:.2} nats  discriminator {:.4}  generator {:.4}  {:.0} img/s",
            s.epoch,
            s.term("recon"),
            s.term("disc"),
            s.term("gen"),
            s.images_per_second
        );
    }
    let title = "AAE: the three phases' losses per step (batch means)";
    let unit = "recon: nats per image; discriminator, generator: cross entropy (nats)";
    curves.write(&out, "aae_loss_curve", title, unit)?;
    let epochs = t.epoch;
    let model = t.model;
    model.set_training(false);
    // Population statistics of the codes' batch norm, in place of the lagging running averages.
    let shift = model.calibrate_codes(train.images(), a.common.run.seed ^ 0xCA1)?;
    println!(
        "codes' batch norm set to the statistics of the {} training images (largest mean change: {shift:.3} standard deviations)",
        train.len()
    );

    // The aggregated posterior q(z) of the test images against the prior.
    let (codes, recon) = encode_split(&model, &data.test, a.common.run.seed ^ 0x7E57)?;
    let d = a.latent;
    let images = data.test.images();
    let mse = recon
        .iter()
        .zip(images)
        .map(|(&p, &q)| ((p - q) as f64).powi(2))
        .sum::<f64>()
        / recon.len() as f64;
    let column =
        |j: usize| -> Vec<f64> { codes.iter().skip(j).step_by(d).map(|&v| v as f64).collect() };
    let (means, stds): (Vec<f64>, Vec<f64>) = (0..d)
        .map(|j| {
            let c = column(j);
            let m = c.iter().sum::<f64>() / c.len() as f64;
            let v = c.iter().map(|x| (x - m).powi(2)).sum::<f64>() / c.len() as f64;
            (m, v.sqrt())
        })
        .unzip();
    println!(
        "test: reconstruction mse {mse:.5}; code means {means:.3?}, standard deviations {stds:.3?}"
    );
    let mut metrics = latent::io::Metrics::new("aae");
    let (prior, prior_name) = a.prior();
    if prior == PriorKind::Normal {
        let ks: Vec<f64> = (0..d).map(|j| aae::ks_normal(&column(j))).collect();
        let worst = ks.iter().copied().fold(0.0, f64::max);
        println!(
            "Kolmogorov–Smirnov statistic of each code dimension against N(0, 1) over {} test codes: {ks:.4?} (largest {worst:.4})",
            data.test.len()
        );
        metrics
            .numbers("ks_statistic_per_dimension", ks.iter().copied())
            .number("ks_statistic_max", worst);
    }

    // Pictures: reconstructions, samples, and with a 2-D latent the codes over the prior.
    let rows = [("original", images), ("reconstruction", &recon[..])];
    shared::save_rows(&out, "test images and their reconstructions", &rows)?;
    let samples = save_samples(&model, &a, &out)?;
    if a.supervised || a.fid_samples > 0 {
        let scorer = shared::Scorer::new(&engine, &data, &a.common.judge.judge)?;
        if a.supervised {
            // Style and class apart: each style decoded under each class should show that class.
            let x = Tensor::from_slice(&engine, &samples, &[100, 784])?;
            let hits = (scorer.net.predict(&x)?.iter().enumerate())
                .filter(|&(i, &p)| p as usize == i / 10)
                .count();
            println!("samples judged as the class they were decoded under: {hits}%");
            metrics
                .number("judge_test_accuracy", scorer.accuracy)
                .number("sample_accuracy", hits as f64 / 100.0);
        }
        if a.fid_samples > 0 {
            let samples = prior_samples(&model, &a, a.fid_samples)?;
            scorer.fid(&samples)?.add_to(&mut metrics);
        }
    }
    if d == 2 {
        let draws = prior.sample(5000, 2, a.common.run.seed ^ 0xD)?;
        let pair = |v: &[f32]| -> Vec<(f32, f32)> { v.chunks(2).map(|p| (p[0], p[1])).collect() };
        let title = format!("test codes by class over draws from the prior ({prior_name})");
        let labels = latent::io::Labels {
            title: &title,
            x: "z₁",
            y: "z₂",
        };
        latent::io::scatter_over_svg(
            out.join("latent_codes.svg"),
            labels,
            ("prior draws", &pair(&draws)),
            &pair(&codes),
            data.test.labels(),
            &CLASS_NAMES,
        )?;
    }

    let minutes = start.elapsed().as_secs_f64() / 60.0;
    metrics
        .text("prior", prior.name())
        .text("posterior", model.config.posterior.name())
        .integer("latent", d as u64)
        .flag("supervised", a.supervised)
        .integer("epochs", epochs)
        .number("test_reconstruction_mse", mse)
        .number("code_calibration_mean_shift", shift)
        .numbers("code_mean_per_dimension", means)
        .numbers("code_std_per_dimension", stds)
        .number("minutes", minutes);
    latent::io::write_metrics(out.join("metrics.json"), &metrics)?;
    println!("end to end: {minutes:.1} minutes; wrote {}", out.display());
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = args.validate().and_then(|_| run(args)) {
        eprintln!("aae: {e}");
        std::process::exit(1);
    }
}
