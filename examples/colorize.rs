//! Diverse colorization (Deshpande et al. 2017) on colourised Fashion-MNIST or on patches of
//! photographs (`--images DIR`): a VAE over colour fields with the paper's decoder loss, a mixture
//! density network from grey to its code, and in the same run the L2-only VAE, a conditional VAE
//! and a regression; best-of-k errors, sample variance, colourfulness and (where the true colour
//! schemes are known) mode coverage in metrics.json.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;

use clap::{Parser, ValueEnum};
use latent::data::CLASS_NAMES;
use latent::data::colour::{Colourised, to_rgb};
use latent::data::photos::{PatchConfig, Photos};
use latent::kernels::mdn::MdnLoss;
use latent::models::colorize::{
    Colorization, ColorizeConfig, ColourExamples, DecoderLoss, GROUPS, Pca, Sampler,
};
use latent::models::diverse::{best_of_k, coverage, mode_of, rms, sample_variance};
use latent::optim::{OptimizerConfig, TrainConfig};
use latent::{Error, Result};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MdnArg {
    /// The paper's loss: only the closest component, −log π_k + ‖z − μ_k‖²/(2σ²).
    Closest,
    /// The mixture's negative log-likelihood.
    Likelihood,
}

/// Samples per test image from which best-of-k (k = 1, 5, 10) and coverage are measured.
const SAMPLES: usize = 10;

/// Side of the images the model takes, and so of the patches cut from photographs.
const PATCH: usize = 28;

/// Train diverse colorization on colourised Fashion-MNIST (or photographs with --images) and
/// write to --out colourings.png (grey, truth, regression, 3 CVAE and 7 VAE+MDN colourings per
/// row), recon_full_vs_l2.png, loss_curve.svg/.csv, the checkpoint and metrics.json.
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
    /// Training images (the first N of the 60,000, or of the training patches with --images;
    /// 0: all).
    #[arg(long, default_value_t = 10_000)]
    train_images: usize,
    /// Test images that the metrics average over (the first N of the 10,000, or of the test
    /// patches with --images).
    #[arg(long, default_value_t = 500)]
    test_images: usize,
    /// Train on photographs instead of colourised Fashion-MNIST: every .png, .jpg and .jpeg
    /// file of DIR (not its sub-folders), cut into 28×28 patches (the model's side) converted
    /// to grey + chroma (BT.601 YUV). The right-hand fifth of every image (at least one patch
    /// wide) gives the test patches, the rest the training patches. A file that does not
    /// decode is skipped with a warning naming it; a missing folder, one with no readable
    /// image, or an image under 56×28 pixels after scaling stops the run before training.
    /// Mode coverage is not measured: photographs have no known colour schemes.
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// With --images: an image whose shorter side is longer is scaled down to this many pixels
    /// before cutting (0: every image at its own size; else at least 56).
    #[arg(long, default_value_t = 256)]
    image_side: usize,
    /// With --images: pixels between the corners of neighbouring patches (14: half-overlapping
    /// 28×28 patches).
    #[arg(long, default_value_t = 14)]
    stride: usize,
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
        flags::at_least("--stride", self.stride, 1)?;
        if self.image_side != 0 {
            flags::at_least("--image-side", self.image_side, 2 * PATCH)?;
        }
        match &self.images {
            Some(_) => Ok(()),
            None => flags::data_folder(self.run.data.as_deref()),
        }
    }

    fn patches(&self) -> PatchConfig {
        PatchConfig {
            patch: PATCH,
            stride: self.stride,
            max_side: self.image_side,
        }
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

/// One sampler's figures on the test images; no coverage where the true modes are unknown.
struct Scores {
    best: [f64; 3],
    variance: f64,
    coverage: Option<f64>,
    colourfulness: f64,
}

/// Mean chroma magnitude √(U² + V²) over the pixels whose grey value is above 0.1 of the
/// colour fields `fields` (`[n, 2, h, w]`) of one grey image `grey` (`[h·w]`).
fn colourfulness(grey: &[f32], fields: &[f32]) -> f64 {
    let px = grey.len();
    let (mut sum, mut count) = (0.0, 0usize);
    for f in fields.chunks_exact(2 * px) {
        for p in (0..px).filter(|&p| grey[p] > 0.1) {
            sum += ((f[p] as f64).powi(2) + (f[px + p] as f64).powi(2)).sqrt();
            count += 1;
        }
    }
    sum / count.max(1) as f64
}

fn score(test: &Colourised, samples: &[f32]) -> Scores {
    let f = 2 * test.pixels();
    let known = !test.labels.is_empty();
    let (mut errors, mut var, mut cov, mut colour) = (Vec::new(), 0.0, 0.0, 0.0);
    for i in 0..test.len() {
        let s = &samples[i * SAMPLES * f..(i + 1) * SAMPLES * f];
        let truth = test.chroma_of(i);
        errors.extend(s.chunks_exact(f).map(|x| rms(x, truth)));
        var += sample_variance(s, f);
        if known {
            let modes = test.modes_of(i);
            let shown: Vec<Option<usize>> = s.chunks_exact(f).map(|x| mode_of(x, &modes)).collect();
            cov += coverage(&shown, modes.len());
        }
        colour += colourfulness(test.grey_of(i), s);
    }
    let n = test.len() as f64;
    Scores {
        best: [1, 5, 10].map(|k| best_of_k(&errors, SAMPLES, k)),
        variance: var / n,
        coverage: known.then_some(cov / n),
        colourfulness: colour / n,
    }
}

/// What a run trains and measures on: the training and test sets, the data's identity for the
/// checkpoint, a name for each test image (its class or its photograph) and where it came from.
struct Sets {
    train: Colourised,
    test: Colourised,
    identity: String,
    names: Vec<String>,
    source: &'static str,
}

/// The colourised Fashion-MNIST sets, or with --images the patches of the photographs (their
/// skipped files named on stderr); read before the device opens.
fn load_sets(args: &Args) -> Result<Sets> {
    let Some(dir) = &args.images else {
        let data = latent::data::FashionMnist::load(args.run.data.as_deref())?;
        let train_split = match args.train_images {
            0 => data.train.clone(),
            n => data.train.take(n),
        };
        let train = Colourised::from_split(&train_split, args.run.seed);
        let test =
            Colourised::from_split(&data.test, args.run.seed ^ 0x7E57).take(args.test_images);
        let names = (test.labels.iter())
            .map(|&l| CLASS_NAMES[l as usize].to_string())
            .collect();
        let identity = format!(
            "colourised Fashion-MNIST (scheme seed {}) {}",
            args.run.seed,
            shared::data_identity(&data, &train_split)
        );
        return Ok(Sets {
            train,
            test,
            identity,
            names,
            source: "colourised Fashion-MNIST",
        });
    };
    let photos = Photos::load(dir, args.patches())?;
    for (path, why) in &photos.skipped {
        eprintln!("warning: skipped `{}`: {why}", path.display());
    }
    let train = match args.train_images {
        0 => photos.train.clone(),
        n => photos.train.take(n),
    };
    if train.len() < args.batch {
        return Err(Error::BadFlag {
            flag: "--images".into(),
            reason: format!(
                "`{}` gives {} training patches, fewer than one batch (--batch {})",
                dir.display(),
                train.len(),
                args.batch
            ),
        });
    }
    let test = photos.test.take(args.test_images);
    let names = (photos.test_sources.iter().take(test.len()))
        .map(|&i| {
            let path = &photos.photos[i].path;
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            stem.chars().take(14).collect()
        })
        .collect();
    eprintln!(
        "photographs: {} images of `{}` ({} skipped, {} other files) give {} training and {} test patches",
        photos.photos.len(),
        dir.display(),
        photos.skipped.len(),
        photos.ignored,
        photos.train.len(),
        photos.test.len()
    );
    Ok(Sets {
        identity: format!("{}; the first {} patches", photos.identity(), train.len()),
        train,
        test,
        names,
        source: "photograph patches",
    })
}

fn run(args: &Args) -> Result<()> {
    let sets = load_sets(args)?;
    let (engine, out) = args.run.open_device("colorize")?;
    let train = ColourExamples::new(sets.train);
    let test = &sets.test;
    let px = train.data.pixels();
    let fit_n = train.data.len().min(2000);
    let pca = Pca::fit(
        &train.data.chroma[..fit_n * 2 * px],
        2 * px,
        args.pcs,
        args.run.seed,
    )?;
    eprintln!(
        "data: {} training and {} test {}; top principal variances {:.2e} .. {:.2e}",
        train.data.len(),
        test.len(),
        sets.source,
        pca.variances[0],
        pca.variances[args.pcs - 1]
    );
    let config = args.config();
    let model = Colorization::new(&engine, config, &pca, args.run.seed)?;
    let tc = TrainConfig {
        optimizers: vec![OptimizerConfig::adam(args.lr); GROUPS.len()],
        checkpoint: Some(out.join("checkpoint.safetensors")),
        name: "colorize".into(),
        ..TrainConfig::adam(args.batch, args.lr, args.run.seed, sets.identity.clone())
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
        ("vae_mdn", score(test, &ours)),
        ("cvae", score(test, &cvae)),
        ("regression", score(test, &reg)),
    ];
    let full = m.reconstruct(&m.vae, &test.grey, &test.chroma)?;
    let l2 = m.reconstruct(&m.vae_l2, &test.grey, &test.chroma)?;
    let f = 2 * px;
    let mean_colour = |fields: &[f32]| {
        (0..test.len())
            .map(|i| colourfulness(test.grey_of(i), &fields[i * f..(i + 1) * f]))
            .sum::<f64>()
            / test.len() as f64
    };
    let (c_truth, c_full, c_l2) = (
        mean_colour(&test.chroma),
        mean_colour(&full),
        mean_colour(&l2),
    );

    // Pictures: colourings beside the truth for test images spread over the set, and the two
    // decoders' reconstructions.
    let rows = 8.min(test.len());
    let picked: Vec<usize> = (0..rows).map(|r| r * test.len() / rows).collect();
    let mut grid = Vec::new();
    for &i in &picked {
        let g = test.grey_of(i);
        grid.extend(to_rgb(g, &vec![0.0; f]));
        grid.extend(to_rgb(g, test.chroma_of(i)));
        grid.extend(to_rgb(g, &reg[i * SAMPLES * f..i * SAMPLES * f + f]));
        for (samples, count) in [(&cvae, 3), (&ours, 7)] {
            for j in 0..count {
                let at = (i * SAMPLES + j) * f;
                grid.extend(to_rgb(g, &samples[at..at + f]));
            }
        }
    }
    let names: Vec<&str> = picked.iter().map(|&i| sets.names[i].as_str()).collect();
    let labels = latent::io::GridLabels {
        title: Some("grey | truth | regression | 3 CVAE | 7 VAE+MDN samples"),
        rows: &names,
    };
    let side = (PATCH, PATCH);
    let path = out.join("colourings.png");
    latent::io::save_labelled_planes(path, &grid, 3, rows, side, 2, labels)?;
    let shown = 10.min(test.len());
    let mut recon = Vec::new();
    for fields in [&test.chroma, &full, &l2] {
        for i in 0..shown {
            recon.extend(to_rgb(test.grey_of(i), &fields[i * f..(i + 1) * f]));
        }
    }
    let labels = latent::io::GridLabels {
        title: Some("reconstructions through the mean code"),
        rows: &["truth", "full loss", "L2 alone"],
    };
    let path = out.join("recon_full_vs_l2.png");
    latent::io::save_labelled_planes(path, &recon, 3, 3, side, 2, labels)?;
    curves.write(
        &out,
        "loss_curve",
        "colorize: training loss per step (batch means)",
        "loss per image",
    )?;

    let mut metrics = latent::io::Metrics::new("colorize");
    metrics
        .text("data", sets.source)
        .integer("epochs", trainer.epoch)
        .integer("steps", trainer.step)
        .integer("train_images", train.data.len() as u64)
        .integer("test_images", test.len() as u64)
        .number("train_seconds", train_seconds)
        .text("mdn_loss", format!("{:?}", config.mdn))
        .text("decoder_loss", format!("{:?}", config.loss))
        .text("error", "RMS chroma error per image (U, V units)")
        .text("coverage", match args.images {
            None => "share of a class's colour schemes shown among 10 samples per image, averaged over images",
            Some(_) => "not measured (null): photographs have no known colour schemes to cover",
        });
    if args.images.is_some() {
        metrics
            .integer("patch_side", PATCH as u64)
            .integer("patch_stride", args.stride as u64)
            .integer("image_side", args.image_side as u64);
    }
    for (name, s) in &scores {
        metrics
            .number(&format!("{name}.best_of_1"), s.best[0])
            .number(&format!("{name}.best_of_5"), s.best[1])
            .number(&format!("{name}.best_of_10"), s.best[2])
            .number(&format!("{name}.sample_variance"), s.variance)
            .optional(&format!("{name}.mode_coverage"), s.coverage)
            .number(&format!("{name}.colourfulness"), s.colourfulness);
    }
    metrics
        .number("colourfulness.truth", c_truth)
        .number("colourfulness.reconstruction_full_loss", c_full)
        .number("colourfulness.reconstruction_l2_loss", c_l2);
    latent::io::write_metrics(out.join("metrics.json"), &metrics)?;
    let percent =
        |c: Option<f64>| c.map_or("not measured".into(), |c| format!("{:.1} %", 100.0 * c));
    let o = &scores[0].1;
    println!(
        "VAE+MDN best-of-1/5/10 {:.4}/{:.4}/{:.4} (ratio {:.2}), coverage {}; CVAE best-of-10 {:.4}, coverage {}; regression {:.4}, coverage {}",
        o.best[0],
        o.best[1],
        o.best[2],
        o.best[2] / o.best[0],
        percent(o.coverage),
        scores[1].1.best[2],
        percent(scores[1].1.coverage),
        scores[2].1.best[2],
        percent(scores[2].1.coverage),
    );
    println!(
        "colourfulness of reconstructions: full loss {c_full:.4}, L2 alone {c_l2:.4}, truth {c_truth:.4}; trained in {train_seconds:.0} s; outputs in {}",
        out.display()
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    shared::exit_on_error("colorize", args.validate().and_then(|_| run(&args)));
}
