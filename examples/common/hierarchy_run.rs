//! The command line shared by the deep hierarchies (`ladder_vae`, `biva`): train through the one
//! trainer with KL warm-up, checkpoint per epoch, evaluate with the shared likelihood evaluator,
//! draw the lecture's pictures, and chart active units per layer beside other runs.

use crate::flags;
use crate::shared::{Curves, data_identity, output_folder};
use latent::data::{DeviceSplit, FashionMnist};
use latent::io::{self, Labels};
use latent::models::hierarchy::{self, Hierarchy, HierarchyElbo, Variance};
use latent::models::likelihood::{self, LayerReport, Report};
use latent::optim::{KlSchedule, TrainConfig};
use latent::{Engine, Error, Result};
use std::path::{Path, PathBuf};

/// The flags every hierarchy example has (`#[command(flatten)]`).
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// Training epochs, each one pass over the training images (469 steps at batch 128).
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Images per training step.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Adam learning rate (step size per update).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Epochs of linear KL warm-up, the KL weight rising from 0 to 1 (Sønderby et al. 2016;
    /// fractions allowed).
    #[arg(long, default_value_t = 2.0)]
    pub warmup_epochs: f64,
    /// No KL warm-up: the KL weight is 1 from the first step (ablation).
    #[arg(long)]
    pub no_warmup: bool,
    /// Train on the first N training images only, for quick tries (0: all 60,000).
    #[arg(long, default_value_t = 0)]
    pub train_images: usize,
    /// Seed, data folder, output folder (checkpoint, pictures, charts, layers.csv and
    /// metrics.json) and resume.
    #[command(flatten)]
    pub run: crate::shared::RunFlags,
    /// Output folders of other runs (e.g. the --no-warmup --no-batchnorm ablation) whose
    /// layers.csv join this run's in active_units.svg and kl_units.svg; repeatable.
    #[arg(long)]
    pub compare: Vec<PathBuf>,
    /// Ancestral samples whose Fréchet score against the test images is reported (computed
    /// with the --judge feature network, not Inception; 0: no score).
    #[arg(long, default_value_t = latent::models::fid::FID_IMAGES)]
    pub fid_samples: usize,
    #[command(flatten)]
    pub judge: crate::shared::JudgeArgs,
    /// How the Gaussian heads make log σ²: `softplus` (σ² = softplus(linear) + 1e-4, the
    /// Ladder VAE paper's, bounded below) or `exp` (a linear map is log σ², unbounded: the
    /// ablation without warm-up and batch norm diverges with it).
    #[arg(long, value_enum, default_value_t = VarianceFlag::Softplus)]
    pub variance: VarianceFlag,
    #[command(flatten)]
    pub protocol: flags::Protocol,
}

/// `--variance`'s values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum VarianceFlag {
    Exp,
    Softplus,
}

impl From<VarianceFlag> for Variance {
    fn from(v: VarianceFlag) -> Variance {
        match v {
            VarianceFlag::Exp => Variance::Exp,
            VarianceFlag::Softplus => Variance::Softplus,
        }
    }
}

impl Common {
    /// Every shared flag checked before the device is opened.
    pub fn validate(&self) -> Result<()> {
        flags::at_least("--batch", self.batch, 1)?;
        flags::positive("--lr", self.lr)?;
        flags::non_negative("--warmup-epochs", self.warmup_epochs)?;
        flags::images("--train-images", self.train_images, self.batch)?;
        for dir in &self.compare {
            flags::existing_file("--compare", Some(&dir.join(LAYERS_CSV)))?;
        }
        self.protocol.validate()?;
        crate::shared::fid_samples_flag(self.fid_samples)?;
        self.judge.validate()?;
        flags::data_folder(self.run.data.as_deref())
    }
}

/// Per-layer figures of a run, read by `--compare`.
const LAYERS_CSV: &str = "layers.csv";

/// Trains the hierarchy `build` makes (named `name`, with `free_bits` nats per level), then
/// evaluates it, draws it and writes its charts and metrics.
pub fn run<M: Hierarchy>(
    name: &str,
    args: &Common,
    free_bits: f32,
    build: impl FnOnce(&Engine) -> Result<M>,
    settings: &[(&str, String)],
) -> Result<()> {
    let out = output_folder(args.run.out.as_deref(), name)?;
    let engine = Engine::new()?;
    eprintln!("adapter: {}", engine.summary());
    let data = FashionMnist::load(args.run.data.as_deref())?;
    let train = match args.train_images {
        0 => data.train.clone(),
        n => data.train.take(n),
    };
    let steps_per_epoch = train.len().div_ceil(args.batch) as f64;
    let warmup = match args.no_warmup {
        true => 0,
        false => (args.warmup_epochs * steps_per_epoch).round() as u64,
    };
    let objective = HierarchyElbo {
        model: build(&engine)?,
        schedule: KlSchedule { beta: 1.0, warmup },
        free_bits,
    };
    // The runs to compare with, read and checked before anything trains.
    let layers = objective.model.stochastic_layers().len();
    let mut compared = Vec::new();
    for dir in &args.compare {
        let l = read_layers(&dir.join(LAYERS_CSV))?;
        if l.len() != layers {
            return Err(Error::BadFlag {
                flag: "--compare".into(),
                reason: format!(
                    "{} has {} stochastic layers, this model {layers}",
                    dir.display(),
                    l.len()
                ),
            });
        }
        compared.push((run_label(dir), l));
    }
    let checkpoint = out.join("checkpoint.safetensors");
    let config = TrainConfig {
        binarize: args.protocol.binarize,
        checkpoint: Some(checkpoint.clone()),
        name: name.into(),
        ..TrainConfig::adam(
            args.batch,
            args.lr,
            args.run.seed,
            data_identity(&data, &train),
        )
    };
    let resume = args.run.resume.then_some(checkpoint.as_path());
    let mut trainer = hierarchy::trainer(objective, config, train.len(), resume)?;
    if args.run.resume {
        eprintln!(
            "resumed after epoch {} (step {})",
            trainer.epoch, trainer.step
        );
    }
    let kl_terms = trainer.model.model.kl_terms();
    let mut curves = Curves::default();
    let start = std::time::Instant::now();
    // The training images on the device: each step gathers its batch there, uploading nothing.
    let on_device = DeviceSplit::new(&engine, &train)?;
    while trainer.epoch < args.epochs {
        let s = trainer.train_epoch(&on_device)?;
        curves.push(&s);
        let per_level: Vec<String> = kl_terms
            .iter()
            .map(|t| format!("{:.2}", s.term(t)))
            .collect();
        println!(
            "epoch {:>3}/{}  loss {:8.3}  recon {:8.3}  KL {:7.3} ({})  {:6.0} img/s",
            s.epoch,
            args.epochs,
            s.term("loss"),
            s.term("recon"),
            s.term("kl"),
            per_level.join(" "),
            s.images_per_second
        );
    }
    let train_minutes = start.elapsed().as_secs_f64() / 60.0;
    let model = &trainer.model.model;
    let test = args.protocol.test_split(&engine, &data)?;
    let report = likelihood::evaluate(model, &test, &args.protocol.settings(args.run.seed))?;
    let fid = match args.fid_samples {
        0 => None,
        n => {
            let scorer = crate::shared::Scorer::new(&engine, &data, &args.judge.judge)?;
            Some(scorer.fid(&hierarchy::ancestral_samples(model, n, args.run.seed)?)?)
        }
    };
    hierarchy::draw(model, &test, &out, args.run.seed)?;
    let title = format!("{name}: training loss per step (batch means)");
    curves.write_only(
        &out,
        "loss_curve",
        &title,
        "nats per image",
        &["loss", "recon", "kl"],
    )?;
    let title = format!("{name}: KL of each stochastic layer against its prior, per step");
    curves.write_only(&out, "kl_per_layer", &title, "nats per image", kl_terms)?;
    write_layers(&out.join(LAYERS_CSV), &report)?;
    let mut runs = vec![(run_label(&out), report.layers.clone())];
    runs.extend(compared);
    chart_units(&out, name, &runs)?;
    let mut m = io::Metrics::new(name);
    m.integer("epochs", trainer.epoch)
        .integer("steps", trainer.step)
        .integer("batch", args.batch as u64)
        .number("lr", args.lr)
        .integer("warmup_steps", warmup)
        .number("free_bits", free_bits as f64)
        .integer("seed", args.run.seed)
        .flag("binarize", args.protocol.binarize)
        .number("train_minutes_this_run", train_minutes);
    for (k, v) in settings {
        m.text(k, v.clone());
    }
    report.add_to(&mut m);
    if let Some(fid) = &fid {
        fid.add_to(&mut m);
    }
    io::write_metrics(out.join("metrics.json"), &m)?;
    println!("{}; outputs in {}", report.summary(), out.display());
    Ok(())
}

/// A run's name in the charts' legends: its output folder's last component.
fn run_label(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `layer,units,kl_nats,active_units,kl_units`, one row per level, bottom first.
fn write_layers(path: &Path, r: &Report) -> Result<()> {
    let mut csv = String::from("layer,units,kl_nats,active_units,kl_units\n");
    for l in &r.layers {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            l.name, l.units, l.kl, l.active_units, l.kl_units
        ));
    }
    std::fs::write(path, csv).map_err(|source| Error::Io {
        action: "write the per-layer figures",
        path: path.to_path_buf(),
        source,
    })
}

/// The per-layer figures another run wrote (the per-unit lists stay empty).
fn read_layers(path: &Path) -> Result<Vec<LayerReport>> {
    let bad = |why: String| Error::BadFlag {
        flag: "--compare".into(),
        reason: format!("{}: {why}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut layers = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let num = |j: usize| -> Result<f64> {
            let v = f.get(j).and_then(|s| s.parse::<f64>().ok());
            v.filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("line {} is not 5 numbers after the name", i + 1)))
        };
        layers.push(LayerReport {
            name: f[0].to_string(),
            units: num(1)? as usize,
            kl: num(2)?,
            unit_kl: Vec::new(),
            unit_variances: Vec::new(),
            active_units: num(3)? as usize,
            kl_units: num(4)? as usize,
        });
    }
    if layers.is_empty() {
        return Err(bad("no layers".into()));
    }
    Ok(layers)
}

/// `active_units.svg` (Burda et al.'s count) and `kl_units.svg` (units carrying KL > 0.01 nats):
/// one group of bars per level, one bar per run.
fn chart_units(out: &Path, name: &str, runs: &[(String, Vec<LayerReport>)]) -> Result<()> {
    let levels = runs[0].1.len();
    type Count = fn(&LayerReport) -> usize;
    let charts: [(&str, &str, Count); 2] = [
        ("active_units", "active units (Cov_x E_q[z] > 0.01)", |l| {
            l.active_units
        }),
        ("kl_units", "units carrying KL (mean KL > 0.01 nats)", |l| {
            l.kl_units
        }),
    ];
    for (stem, what, pick) in charts {
        let values: Vec<Vec<f64>> = runs
            .iter()
            .map(|(_, r)| r.iter().map(|l| pick(l) as f64).collect())
            .collect();
        let series: Vec<(&str, &[f64])> = runs
            .iter()
            .zip(&values)
            .map(|((label, _), v)| (label.as_str(), v.as_slice()))
            .collect();
        let title = format!("{name}: {what} per stochastic layer");
        let labels = Labels {
            title: &title,
            x: "stochastic layer (1 = next to x)",
            y: "units",
        };
        io::bar_chart_svg(out.join(format!("{stem}.svg")), labels, levels, &series)?;
    }
    Ok(())
}
