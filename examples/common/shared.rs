//! What every example shares: the identity of its training data (stored in checkpoints), the
//! per-step loss curves of a run, and the in-repo judge, an MLP classifier trained on the real
//! training images.
// Each example uses some of these.
#![allow(dead_code)]

use latent::data::{FashionMnist, Split};
use latent::models::classifier::{Classifier, ClassifierTraining};
use latent::optim::{EpochStats, Examples, TrainConfig, Trainable, Trainer};
use latent::{Engine, Result};
use std::path::{Path, PathBuf};

/// The training data's identity as checkpoints store it (a resume on other data is refused):
/// the data set's files (sizes and checksums) and how many of its training images are used.
pub fn data_identity(data: &FashionMnist, train: &Split) -> String {
    format!(
        "{}; the first {} training images",
        data.identity(),
        train.len()
    )
}

/// Trains the judge on all training images for `epochs` epochs (through the one trainer) and
/// returns it with its accuracy on the test images.
pub fn train_judge(
    engine: &Engine,
    data: &FashionMnist,
    epochs: u64,
    seed: u64,
) -> Result<(Classifier, f64)> {
    let judge = Classifier::new(engine, data.train.pixels_per_image(), 10, seed)?;
    let training = ClassifierTraining {
        epochs,
        seed,
        ..Default::default()
    };
    let config = training.config(data_identity(data, &data.train));
    let mut t = Trainer::new(judge, config, data.train.len())?;
    while t.epoch < epochs {
        let s = t.train_epoch(&data.train)?;
        println!(
            "judge {:>2}/{epochs}  loss {:.4}  {:7.0} img/s",
            s.epoch,
            s.term("loss"),
            s.images_per_second
        );
    }
    let accuracy = t.model.accuracy(&data.test)?;
    Ok((t.model, accuracy))
}

/// Every step's training terms over the epochs of one run, for a labelled chart and a CSV.
#[derive(Default)]
pub struct Curves {
    names: Vec<&'static str>,
    values: Vec<Vec<f64>>,
}

impl Curves {
    /// Appends an epoch's per-step values of every term.
    pub fn push(&mut self, epoch: &EpochStats) {
        if self.names.is_empty() {
            self.names = epoch.terms.iter().map(|(n, _)| *n).collect();
            self.values = vec![Vec::new(); self.names.len()];
        }
        for (column, name) in self.values.iter_mut().zip(&self.names) {
            column.extend(epoch.steps_of(name).iter().map(|&v| v as f64));
        }
    }

    /// Writes `<stem>.svg` (title `title`, y axis `unit`; one panel per term when there are
    /// several) and `<stem>.csv` into `out`; nothing
    /// when no epoch was trained in this run (a resumed or loaded model).
    pub fn write(&self, out: &Path, stem: &str, title: &str, unit: &str) -> Result<()> {
        if self.values.first().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        let series: Vec<(&str, &[f64])> = (self.names.iter().copied())
            .zip(self.values.iter().map(Vec::as_slice))
            .collect();
        let labels = latent::io::Labels {
            title,
            x: "training step of this run",
            y: unit,
        };
        // One panel per term: a KL near 10 nats stays readable beside a loss near 250.
        let svg = out.join(format!("{stem}.svg"));
        match series.len() {
            1 => latent::io::line_chart_svg(svg, labels, &series)?,
            _ => latent::io::line_panels_svg(svg, labels, &series)?,
        }
        latent::io::series_csv(out.join(format!("{stem}.csv")), "step", &series)
    }
}

/// The flags of a run that every example of the diverse-output family takes: seed, data folder,
/// output folder and resume.
#[derive(clap::Args, Debug)]
pub struct RunFlags {
    /// Seed of initialisation, generated data, data order and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder with the Fashion-MNIST IDX files [default: $LATENT_DATA, else
    /// /usr/share/datasets/fashion-mnist].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder [default: out/<example name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from <out>/checkpoint.safetensors.
    #[arg(long)]
    pub resume: bool,
}

impl RunFlags {
    /// Opens the device and the data and creates the output folder (`out/<name>` by default):
    /// `(engine, data, out)`.
    pub fn open(&self, name: &str) -> Result<(Engine, FashionMnist, PathBuf)> {
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| Path::new("out").join(name));
        let engine = Engine::new()?;
        eprintln!("adapter: {}", engine.summary());
        let data = FashionMnist::load(self.data.as_deref())?;
        std::fs::create_dir_all(&out).map_err(|source| latent::Error::Io {
            action: "create the output folder",
            path: out.clone(),
            source,
        })?;
        Ok((engine, data, out))
    }
}

/// Trains `model` on `data` to `epochs` epochs — a fresh run, or with `resume` the run saved in
/// `config.checkpoint` — printing `line(stats)` after each epoch: `(trainer, curves, seconds)`.
pub fn train_epochs<M: Trainable>(
    model: M,
    config: TrainConfig,
    data: &impl Examples,
    epochs: u64,
    resume: bool,
    line: impl Fn(&EpochStats) -> String,
) -> Result<(Trainer<M>, Curves, f64)> {
    let mut trainer = match (resume, config.checkpoint.clone()) {
        (true, Some(ck)) => Trainer::resume(model, config, data.count(), &ck)?,
        _ => Trainer::new(model, config, data.count())?,
    };
    let mut curves = Curves::default();
    let start = std::time::Instant::now();
    while trainer.epoch < epochs {
        let s = trainer.train_epoch(data)?;
        curves.push(&s);
        println!("epoch {:>2}/{epochs}  {}", s.epoch, line(&s));
    }
    Ok((trainer, curves, start.elapsed().as_secs_f64()))
}
