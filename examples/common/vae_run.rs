//! The command line shared by the `vae` and `cvae` examples: train the MLP VAE (or, with class
//! conditioning, the CVAE) on Fashion-MNIST, checkpoint per epoch, then draw and evaluate.

use crate::flags;
use clap::{Parser, ValueEnum};
use latent::data::{DeviceSplit, FashionMnist};
use latent::models::conv_vae::ConvVae;
use latent::models::likelihood;
use latent::models::vae::{self, Autoencoder, Objective, Vae, VaeConfig};
use latent::{Engine, Result};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ObjectiveArg {
    /// Reconstruction + β·KL (the ELBO).
    Elbo,
    /// Reconstruction only (an autoencoder with noise).
    ReconOnly,
    /// KL only (the posterior collapses onto the prior).
    KlOnly,
}

/// Train and evaluate a VAE on Fashion-MNIST (the example's `about` replaces this line).
#[derive(Parser, Debug)]
pub struct Args {
    /// Training epochs, each one pass over the training images (469 steps at batch 128).
    #[arg(long, default_value_t = 10)]
    epochs: u64,
    /// Images per training step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam learning rate (step size per update).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Latent dimensions of z (2 also draws manifold.png and latent_scatter.svg).
    #[arg(long, default_value_t = 32)]
    latent: usize,
    /// KL weight β in the loss recon + β·KL (1: the ELBO).
    #[arg(long, default_value_t = 1.0)]
    beta: f32,
    /// Training steps of linear KL warm-up from 0 to β (0: none).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Seed of initialisation, data order and noise (any integer).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only, for quick tries (0: all 60,000).
    #[arg(long, default_value_t = 0)]
    train_images: usize,
    /// Folder with the Fashion-MNIST IDX files [default: $LATENT_DATA, else
    /// /usr/share/datasets/fashion-mnist]; a folder named here must exist and hold them.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output folder for the checkpoint, pictures, loss curve and metrics.json
    /// [default: out/<example name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from <out>/checkpoint.safetensors (bit for bit as if never stopped).
    #[arg(long)]
    resume: bool,
    /// What the loss optimises.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Elbo)]
    objective: ObjectiveArg,
    #[command(flatten)]
    protocol: flags::Protocol,
    /// Also write attribute_demo.png: class attribute vectors added to test encodings (vae only).
    #[arg(long)]
    attribute_demo: bool,
    /// Factor on the one-hot label where it joins encoder and decoder (cvae only; unitless).
    #[arg(long, default_value_t = vae::LABEL_SCALE)]
    label_scale: f32,
    /// Prior samples (decoder mean images) in the Fréchet score against the 10,000 test
    /// images, computed with the --judge feature network (0: no score).
    #[arg(long, default_value_t = latent::models::fid::FID_IMAGES)]
    fid_samples: usize,
    #[command(flatten)]
    judge: crate::shared::JudgeArgs,
}

impl Args {
    /// Every flag checked before the device is opened or anything trains.
    fn validate(&self) -> Result<()> {
        flags::at_least("--batch", self.batch, 1)?;
        flags::positive("--lr", self.lr)?;
        flags::at_least("--latent", self.latent, 1)?;
        flags::non_negative("--beta", self.beta as f64)?;
        flags::images("--train-images", self.train_images, self.batch)?;
        self.protocol.validate()?;
        flags::positive("--label-scale", self.label_scale as f64)?;
        self.judge.validate()?;
        crate::shared::fid_samples_flag(self.fid_samples)?;
        flags::data_folder(self.data.as_deref())
    }
}

/// Prior samples per class that the judge classifies.
const JUDGED_PER_CLASS: usize = 100;

/// Which model an example trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // each example uses one
pub enum Kind {
    /// The MLP VAE (W1).
    Mlp,
    /// The MLP VAE conditioned on the 10 classes.
    Conditional,
    /// The convolutional VAE with batch norm (W2).
    Conv,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mlp => "vae",
            Kind::Conditional => "cvae",
            Kind::Conv => "conv_vae",
        }
    }
}

fn run(args: &Args, kind: Kind) -> Result<()> {
    let name = kind.name();
    let classes = if kind == Kind::Conditional { 10 } else { 0 };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(name));
    let engine = Engine::new()?;
    eprintln!("adapter: {}", engine.summary());
    let data = FashionMnist::load(args.data.as_deref())?;
    eprintln!(
        "data: {} ({} train, {} test)",
        data.dir.display(),
        data.train.len(),
        data.test.len()
    );
    std::fs::create_dir_all(&out).map_err(|source| latent::Error::Io {
        action: "create the output folder",
        path: out.clone(),
        source,
    })?;
    let objective = match args.objective {
        ObjectiveArg::Elbo => Objective::Elbo,
        ObjectiveArg::ReconOnly => Objective::ReconOnly,
        ObjectiveArg::KlOnly => Objective::KlOnly,
    };
    let config = VaeConfig {
        latent: args.latent,
        classes,
        label_scale: args.label_scale,
        ..VaeConfig::default()
    };
    let settings = vae::TrainSettings {
        batch: args.batch,
        lr: args.lr,
        beta: args.beta,
        warmup: args.warmup,
        seed: args.seed,
        objective,
        binarize: args.protocol.binarize,
    };
    let train = match args.train_images {
        0 => data.train.clone(),
        n => data.train.take(n),
    };
    let checkpoint = out.join("checkpoint.safetensors");
    let model: Box<dyn Autoencoder> = match kind {
        Kind::Conv => Box::new(ConvVae::new(&engine, args.latent, args.seed)?),
        _ => Box::new(Vae::new(&engine, config, args.seed)?),
    };
    let config = settings.config(
        crate::shared::data_identity(&data, &train),
        Some(checkpoint.clone()),
    );
    let mut trainer = if args.resume {
        let t = vae::resume(model, &settings, config, train.len(), &checkpoint)?;
        eprintln!(
            "resumed from {} after epoch {} (step {})",
            checkpoint.display(),
            t.epoch,
            t.step
        );
        t
    } else {
        vae::trainer(model, &settings, config, train.len())?
    };
    let mut curves = crate::shared::Curves::default();
    // The training images on the device: each step gathers its batch there, uploading nothing.
    let on_device = DeviceSplit::new(&engine, &train)?;
    while trainer.epoch < args.epochs {
        // Checkpointed atomically after the epoch, once every tensor is checked finite.
        let s = trainer.train_epoch(&on_device)?;
        let (loss, recon, kl) = (s.term("loss"), s.term("recon"), s.term("kl"));
        curves.push(&s);
        println!(
            "epoch {:>3}/{}  loss {loss:8.3}  recon {recon:8.3}  KL {kl:7.3}  {:7.0} img/s",
            s.epoch, args.epochs, s.images_per_second
        );
    }
    let vae = &*trainer.model.vae;
    let test = args.protocol.test_split(&engine, &data)?;
    let mut report = vae::Report {
        likelihood: likelihood::evaluate(vae, &test, &args.protocol.settings(args.seed))?,
        judge_accuracy: None,
        sample_accuracy: None,
        fid: None,
    };
    if classes > 0 || args.fid_samples > 0 {
        judge_samples(args, vae, &data, &mut report)?;
    }
    vae::draw(vae, &data.test, data.class_names(), &out, args.seed)?;
    if classes == 0 {
        // A conditional model's paths would need a label per pair: it shows style transfer instead.
        latent::models::latent::interpolation_strips(vae, &data.test, &out)?;
        if args.attribute_demo {
            latent::models::latent::attribute_demo(vae, &data.test, &out)?;
        }
    }
    let title = format!("{name}: training loss per step (batch means)");
    curves.write(&out, "loss_curve", &title, "nats per image")?;
    let metrics = report.metrics(name, &settings, trainer.epoch, trainer.step);
    latent::io::write_metrics(out.join("metrics.json"), &metrics)?;
    let conditional = if classes > 0 { "conditional " } else { "" };
    println!(
        "{conditional}{}; outputs in {}",
        report.likelihood.summary(),
        out.display()
    );
    Ok(())
}

/// Loads (or trains once and caches) the feature network of `--judge`; for a conditional
/// model it classifies `JUDGED_PER_CLASS` prior samples z ~ N(0, I) of every class decoded under
/// their label, and with `--fid-samples` > 0 it scores that many prior samples by the Fréchet
/// score; the figures go into `report`.
fn judge_samples(
    args: &Args,
    model: &dyn Autoencoder,
    data: &FashionMnist,
    report: &mut vae::Report,
) -> Result<()> {
    let scorer = crate::shared::Scorer::new(model.engine(), data, &args.judge.judge)?;
    report.judge_accuracy = Some(scorer.accuracy);
    if model.dims().classes > 0 {
        let samples = vae::sample_accuracy(model, &scorer.net, JUDGED_PER_CLASS, 1.0, args.seed)?;
        println!(
            "judge: {:.1} % of the test images; prior samples classified as their label: {:.1} % ({} per class)",
            100.0 * scorer.accuracy,
            100.0 * samples.overall,
            JUDGED_PER_CLASS
        );
        report.sample_accuracy = Some(samples);
    }
    if args.fid_samples > 0 {
        let samples = vae::prior_samples(model, args.fid_samples, args.seed)?;
        report.fid = Some(scorer.fid(&samples)?);
    }
    Ok(())
}

/// Parses the command line (`about` is the program's description) and trains `kind`.
pub fn main(about: &'static str, kind: Kind) {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Args::command().about(about).get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = args.validate().and_then(|_| run(&args, kind)) {
        eprintln!("{}: {e}", kind.name());
        std::process::exit(1);
    }
}
