//! Diverse colorization (Deshpande et al. 2017) on colourised Fashion-MNIST: a VAE over colour
//! fields with the paper's decoder loss, a mixture density network from grey to its code, and in
//! the same run the L2-only VAE, a conditional VAE and a regression; best-of-k errors, sample
//! variance and mode coverage against the known colour schemes in metrics.json.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;

use clap::{Parser, ValueEnum};
use latent::data::colour::{Colourised, to_rgb};
use latent::kernels::mdn::MdnLoss;
use latent::models::colorize::{
    Colorization, ColorizeConfig, ColourExamples, DecoderLoss, GROUPS, Pca, Sampler,
};
use latent::models::diverse::{best_of_k, coverage, mode_of, rms, sample_variance};
use latent::optim::{OptimizerConfig, TrainConfig};
use latent::{Error, Result};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MdnArg {
    /// The paper's loss: only the closest component, −log π_k + ‖z − μ_k‖²/(2σ²).
    Closest,
    /// The mixture's negative log-likelihood.
    Likelihood,
}

/// Samples per test image from which best-of-k (k = 1, 5, 10) and coverage are measured.
const SAMPLES: usize = 10;

/// Train diverse colorization on colourised Fashion-MNIST and write to --out colourings.png
/// (grey, truth, regression, 3 CVAE and 7 VAE+MDN colourings per row), recon_full_vs_l2.png,
/// loss_curve.svg/.csv, the checkpoint and metrics.json.
#[derive(Parser, Debug)]
struct Args {
    /// Training epochs over --train-images.
    #[arg(long, default_value_t = 4)]
    epochs: u64,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Adam learning rate of every network.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Training images (the first N of the 60,000; 0: all).
    #[arg(long, default_value_t = 10_000)]
    train_images: usize,
    /// Test images that the metrics average over (the first N of the 10,000).
    #[arg(long, default_value_t = 500)]
    test_images: usize,
    /// Latent dimensions of the colour VAE's code z.
    #[arg(long, default_value_t = 16)]
    latent: usize,
    /// Mixture components of the MDN.
    #[arg(long, default_value_t = 8)]
    components: usize,
    /// The MDN's fixed σ (latent units).
    #[arg(long, default_value_t = 0.2)]
    sigma: f32,
    /// The MDN's loss.
    #[arg(long, value_enum, default_value_t = MdnArg::Closest)]
    mdn_loss: MdnArg,
    /// KL weight of the colour VAE (the conditional VAE keeps 1).
    #[arg(long, default_value_t = 0.1)]
    beta: f32,
    /// Principal components of the Mahalanobis loss.
    #[arg(long, default_value_t = 16)]
    pcs: usize,
    /// Leave the Mahalanobis term out of the decoder loss.
    #[arg(long)]
    no_mahalanobis: bool,
    /// Leave the colourfulness weights out of the decoder loss (plain L2).
    #[arg(long)]
    no_colourfulness: bool,
    /// Leave the gradient term out of the decoder loss.
    #[arg(long)]
    no_gradient: bool,
    #[command(flatten)]
    run: shared::RunFlags,
}

impl Args {
    fn validate(&self) -> Result<()> {
        flags::at_least("--epochs", self.epochs as usize, 1)?;
        flags::at_least("--batch", self.batch, 1)?;
        flags::positive("--lr", self.lr)?;
        flags::images("--train-images", self.train_images, self.batch)?;
        flags::at_least("--test-images", self.test_images, 8)?;
        flags::at_least("--latent", self.latent, 1)?;
        flags::at_least("--components", self.components, 1)?;
        flags::positive("--sigma", self.sigma as f64)?;
        flags::non_negative("--beta", self.beta as f64)?;
        flags::at_least("--pcs", self.pcs, 1)?;
        if self.pcs > 2 * 28 * 28 {
            return Err(Error::BadFlag {
                flag: "--pcs".into(),
                reason: format!(
                    "at most {} (the values of a field), got {}",
                    2 * 28 * 28,
                    self.pcs
                ),
            });
        }
        flags::data_folder(self.run.data.as_deref())
    }

    fn config(&self) -> ColorizeConfig {
        ColorizeConfig {
            latent: self.latent,
            components: self.components,
            sigma: self.sigma,
            mdn: match self.mdn_loss {
                MdnArg::Closest => MdnLoss::Closest,
                MdnArg::Likelihood => MdnLoss::Likelihood,
            },
            loss: DecoderLoss {
                mahalanobis: !self.no_mahalanobis,
                colourfulness: !self.no_colourfulness,
                gradient: !self.no_gradient,
            },
            beta: self.beta,
            pcs: self.pcs,
            ..ColorizeConfig::default()
        }
    }
}

/// One sampler's figures on the test images.
struct Scores {
    best: [f64; 3],
    variance: f64,
    coverage: f64,
    colourfulness: f64,
}

/// Mean chroma magnitude √(U² + V²) over the pixels whose grey value is above 0.1.
fn colourfulness(grey: &[f32], fields: &[f32]) -> f64 {
    let px = grey.len();
    let n = fields.len() / (2 * px);
    let (mut sum, mut count) = (0.0, 0usize);
    for f in fields.chunks_exact(2 * px) {
        for p in (0..px).filter(|&p| grey[p] > 0.1) {
            sum += ((f[p] as f64).powi(2) + (f[px + p] as f64).powi(2)).sqrt();
            count += 1;
        }
    }
    let _ = n;
    sum / count.max(1) as f64
}

fn score(test: &Colourised, samples: &[f32]) -> Scores {
    let f = 2 * test.pixels();
    let (mut errors, mut var, mut cov, mut colour) = (Vec::new(), 0.0, 0.0, 0.0);
    for i in 0..test.len() {
        let s = &samples[i * SAMPLES * f..(i + 1) * SAMPLES * f];
        let truth = test.chroma_of(i);
        errors.extend(s.chunks_exact(f).map(|x| rms(x, truth)));
        var += sample_variance(s, f);
        let modes = test.modes_of(i);
        let shown: Vec<Option<usize>> = s.chunks_exact(f).map(|x| mode_of(x, &modes)).collect();
        cov += coverage(&shown, modes.len());
        colour += colourfulness(test.grey_of(i), s);
    }
    let n = test.len() as f64;
    Scores {
        best: [1, 5, 10].map(|k| best_of_k(&errors, SAMPLES, k)),
        variance: var / n,
        coverage: cov / n,
        colourfulness: colour / n,
    }
}

fn run(args: &Args) -> Result<()> {
    let (engine, data, out) = args.run.open("colorize")?;
    let train_split = match args.train_images {
        0 => data.train.clone(),
        n => data.train.take(n),
    };
    let train = ColourExamples::new(Colourised::from_split(&train_split, args.run.seed));
    let test = Colourised::from_split(&data.test, args.run.seed ^ 0x7E57).take(args.test_images);
    let px = train.data.pixels();
    let fit_n = train.data.len().min(2000);
    let pca = Pca::fit(
        &train.data.chroma[..fit_n * 2 * px],
        2 * px,
        args.pcs,
        args.run.seed,
    )?;
    eprintln!(
        "data: {} training and {} test colourised images; top principal variances {:.2e} .. {:.2e}",
        train.data.len(),
        test.len(),
        pca.variances[0],
        pca.variances[args.pcs - 1]
    );
    let config = args.config();
    let model = Colorization::new(&engine, config, &pca, args.run.seed)?;
    let identity = format!(
        "colourised ({} schemes seed {}) {}",
        "SCHEMES",
        args.run.seed,
        shared::data_identity(&data, &train_split)
    );
    let tc = TrainConfig {
        optimizers: vec![OptimizerConfig::adam(args.lr); GROUPS.len()],
        checkpoint: Some(out.join("checkpoint.safetensors")),
        name: "colorize".into(),
        ..TrainConfig::adam(args.batch, args.lr, args.run.seed, identity)
    };
    let (trainer, curves, train_seconds) =
        shared::train_epochs(model, tc, &train, args.epochs, args.run.resume, |s| {
            format!(
                "vae {:.2} (decoder {:.2}, KL {:.2})  mdn {:.3}  {:5.0} img/s",
                s.terms[0].1, s.terms[1].1, s.terms[2].1, s.terms[3].1, s.images_per_second
            )
        })?;
    let m = &trainer.model;
    let ours = m.sample(&test.grey, SAMPLES, Sampler::Mdn, args.run.seed ^ 0x5A)?;
    let cvae = m.sample(&test.grey, SAMPLES, Sampler::Cvae, args.run.seed ^ 0x5B)?;
    let reg = m.sample(&test.grey, SAMPLES, Sampler::Regression, 0)?;
    let scores = [
        ("vae_mdn", score(&test, &ours)),
        ("cvae", score(&test, &cvae)),
        ("regression", score(&test, &reg)),
    ];
    let full = m.reconstruct(&m.vae, &test.grey, &test.chroma)?;
    let l2 = m.reconstruct(&m.vae_l2, &test.grey, &test.chroma)?;
    let px_grey = |i: usize| test.grey_of(i);
    let mean_colour = |fields: &[f32]| {
        (0..test.len())
            .map(|i| colourfulness(px_grey(i), &fields[i * 2 * px..(i + 1) * 2 * px]))
            .sum::<f64>()
            / test.len() as f64
    };
    let (c_truth, c_full, c_l2) = (
        mean_colour(&test.chroma),
        mean_colour(&full),
        mean_colour(&l2),
    );

    // Pictures: colourings beside the truth, and the two decoders' reconstructions.
    let rows = 8.min(test.len());
    let mut grid = Vec::new();
    let f = 2 * px;
    for i in 0..rows {
        let g = test.grey_of(i);
        grid.extend(to_rgb(g, &vec![0.0; f]));
        grid.extend(to_rgb(g, test.chroma_of(i)));
        grid.extend(to_rgb(g, &reg[i * SAMPLES * f..i * SAMPLES * f + f]));
        for j in 0..3 {
            let at = (i * SAMPLES + j) * f;
            grid.extend(to_rgb(g, &cvae[at..at + f]));
        }
        for j in 0..7 {
            let at = (i * SAMPLES + j) * f;
            grid.extend(to_rgb(g, &ours[at..at + f]));
        }
    }
    latent::io::save_rgb_grid(out.join("colourings.png"), &grid, rows, 28, 28, 2)?;
    let mut recon = Vec::new();
    for (fields, is_truth) in [(&test.chroma, true), (&full, false), (&l2, false)] {
        for i in 0..10.min(test.len()) {
            let _ = is_truth;
            recon.extend(to_rgb(test.grey_of(i), &fields[i * f..(i + 1) * f]));
        }
    }
    latent::io::save_rgb_grid(out.join("recon_full_vs_l2.png"), &recon, 3, 28, 28, 2)?;
    curves.write(
        &out,
        "loss_curve",
        "colorize: training loss per step (batch means)",
        "loss per image",
    )?;

    let mut metrics = latent::io::Metrics::new("colorize");
    metrics
        .integer("epochs", trainer.epoch)
        .integer("steps", trainer.step)
        .integer("train_images", train.data.len() as u64)
        .integer("test_images", test.len() as u64)
        .number("train_seconds", train_seconds)
        .text("mdn_loss", format!("{:?}", config.mdn))
        .text("decoder_loss", format!("{:?}", config.loss))
        .text("error", "RMS chroma error per image (U, V units)")
        .text("coverage", "share of a class's colour schemes shown among 10 samples per image, averaged over images");
    for (name, s) in &scores {
        metrics
            .number(&format!("{name}.best_of_1"), s.best[0])
            .number(&format!("{name}.best_of_5"), s.best[1])
            .number(&format!("{name}.best_of_10"), s.best[2])
            .number(&format!("{name}.sample_variance"), s.variance)
            .number(&format!("{name}.mode_coverage"), s.coverage)
            .number(&format!("{name}.colourfulness"), s.colourfulness);
    }
    metrics
        .number("colourfulness.truth", c_truth)
        .number("colourfulness.reconstruction_full_loss", c_full)
        .number("colourfulness.reconstruction_l2_loss", c_l2);
    latent::io::write_metrics(out.join("metrics.json"), &metrics)?;
    let o = &scores[0].1;
    println!(
        "VAE+MDN best-of-1/5/10 {:.4}/{:.4}/{:.4} (ratio {:.2}), coverage {:.1} %; CVAE best-of-10 {:.4}, coverage {:.1} %; regression {:.4}, coverage {:.1} %",
        o.best[0],
        o.best[1],
        o.best[2],
        o.best[2] / o.best[0],
        100.0 * o.coverage,
        scores[1].1.best[2],
        100.0 * scores[1].1.coverage,
        scores[2].1.best[2],
        100.0 * scores[2].1.coverage,
    );
    println!(
        "colourfulness of reconstructions: full loss {c_full:.4}, L2 alone {c_l2:.4}, truth {c_truth:.4}; trained in {train_seconds:.0} s; outputs in {}",
        out.display()
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = args.validate().and_then(|_| run(&args)) {
        eprintln!("colorize: {e}");
        std::process::exit(1);
    }
}
