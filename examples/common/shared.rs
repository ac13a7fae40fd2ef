//! What every example shares: the identity of its training data (stored in checkpoints), the
//! per-step loss curves of a run, the conv feature network (`models::feature_net`) that judges
//! samples and gives the Fréchet score, the output folder, and the run flags and a fresh or
//! resumed trainer (VQ examples, aae, colorize and forecast).
// Each example uses some of these.
#![allow(dead_code)]

use latent::data::{DeviceSplit, FashionMnist, Split};
use latent::models::feature_net::{FeatureNet, FeatureNetConfig, FeatureNetTraining};
use latent::models::fid::{FID_IMAGES, Fid, FidReference, fid_of_samples};
use latent::optim::{EpochStats, Examples, TrainConfig, Trainable, Trainer};
use latent::{Engine, Result, Tensor};
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

/// Ends an example: its error printed plainly after its name, and a non-zero exit status.
pub fn exit_on_error(example: &str, result: Result<()>) {
    if let Err(e) = result {
        eprintln!("{example}: {e}");
        std::process::exit(1);
    }
}

/// Where the `classifier` example writes the feature network by default, and where every
/// other example looks for it (`--judge`).
pub const JUDGE_PATH: &str = "out/classifier/feature_net.safetensors";

/// Trains the feature network on all training images through the one trainer (a progress bar
/// per epoch, a line after each, its per-step losses appended to `curves`) and returns it in
/// evaluation mode with its test accuracy.
pub fn train_feature_net(
    engine: &Engine,
    data: &FashionMnist,
    training: &FeatureNetTraining,
    checkpoint: Option<&Path>,
    curves: &mut Curves,
) -> Result<(FeatureNet, f64)> {
    let mut net = FeatureNet::new(engine, FeatureNetConfig::default(), training.seed)?;
    net.augment = training.augment;
    let config = training.config(data_identity(data, &data.train), checkpoint);
    let mut t = match checkpoint.filter(|p| p.is_file()) {
        Some(p) => Trainer::resume(net, config, data.train.len(), p)?,
        None => Trainer::new(net, config, data.train.len())?,
    };
    // The training images on the device: each step gathers its batch there, uploading nothing.
    let on_device = DeviceSplit::new(engine, &data.train)?;
    while t.epoch < training.epochs {
        let s = t.train_epoch(&on_device)?;
        curves.push(&s);
        println!(
            "feature net {:>2}/{}  loss {:.4}  {:7.0} img/s",
            s.epoch,
            training.epochs,
            s.term("loss"),
            s.images_per_second
        );
    }
    let accuracy = t.model.accuracy(&data.test)?;
    Ok((t.model, accuracy))
}

/// The judge of every example: the feature network saved at `path` (refused if it was trained
/// on other data than `data`'s training images), or, when there is no file, one trained now with
/// the `classifier` example's defaults and saved there for the next run. Returns it in
/// evaluation mode with its test accuracy.
pub fn judge(engine: &Engine, data: &FashionMnist, path: &Path) -> Result<(FeatureNet, f64)> {
    let identity = data_identity(data, &data.train);
    if path.is_file() {
        let (net, accuracy) = FeatureNet::load(engine, path, &identity)?;
        println!(
            "judge: feature network {} ({:.2} % on the test images)",
            path.display(),
            100.0 * accuracy
        );
        return Ok((net, accuracy));
    }
    println!(
        "judge: no feature network at {}; training one with the classifier example's defaults",
        path.display()
    );
    let training = FeatureNetTraining::default();
    let (net, accuracy) = train_feature_net(engine, data, &training, None, &mut Curves::default())?;
    if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(|source| latent::Error::Io {
            action: "create the judge's folder",
            path: folder.to_path_buf(),
            source,
        })?;
    }
    net.save(path, &identity, accuracy)?;
    println!(
        "judge: {:.2} % on the test images; saved to {}",
        100.0 * accuracy,
        path.display()
    );
    Ok((net, accuracy))
}

/// The judge and the Fréchet score's reference statistics, ready to score samples.
pub struct Scorer {
    pub net: FeatureNet,
    pub accuracy: f64,
    pub reference: FidReference,
}

impl Scorer {
    /// Loads (or trains and caches) the judge at `path` and computes the test images' feature
    /// statistics and the real-data floor (first `FID_IMAGES` training images).
    pub fn new(engine: &Engine, data: &FashionMnist, path: &Path) -> Result<Scorer> {
        let (net, accuracy) = judge(engine, data, path)?;
        let reference = FidReference::new(&net, &data.train, &data.test, FID_IMAGES)?;
        Ok(Scorer {
            net,
            accuracy,
            reference,
        })
    }

    /// The Fréchet score of `samples` `[n, 784]` (printed with what it is).
    pub fn fid(&self, samples: &Tensor) -> Result<Fid> {
        let fid = fid_of_samples(&self.net, samples, &self.reference)?;
        println!("{}", fid.line());
        Ok(fid)
    }
}

/// The flags of the judge and the Fréchet score, shared by every generative example.
#[derive(clap::Args, Debug, Clone)]
pub struct JudgeArgs {
    /// The feature network that judges samples and gives the Fréchet score (made by the
    /// `classifier` example; trained once and saved here when the file is missing).
    #[arg(long, default_value = JUDGE_PATH)]
    pub judge: PathBuf,
}

impl JudgeArgs {
    /// Checked before anything trains: the judge file may be missing (it is then trained and
    /// saved), but a path that exists must be a file.
    pub fn validate(&self) -> Result<()> {
        if self.judge.exists() && !self.judge.is_file() {
            return Err(latent::Error::BadFlag {
                flag: "--judge".into(),
                reason: format!("names `{}`, which is not a file", self.judge.display()),
            });
        }
        Ok(())
    }
}

/// `--fid-samples N`: 0 (no score) or at least 2 (a covariance needs two rows).
pub fn fid_samples_flag(value: usize) -> Result<()> {
    match value {
        1 => Err(latent::Error::BadFlag {
            flag: "--fid-samples".into(),
            reason: "must be 0 (no score) or at least 2, got 1".into(),
        }),
        _ => Ok(()),
    }
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
        self.write_only(out, stem, title, unit, &self.names)
    }

    /// [`Curves::write`] of the terms called `names` only (those the run logged).
    pub fn write_only(
        &self,
        out: &Path,
        stem: &str,
        title: &str,
        unit: &str,
        names: &[&str],
    ) -> Result<()> {
        if self.values.first().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        let series: Vec<(&str, &[f64])> = (self.names.iter().copied())
            .zip(self.values.iter().map(Vec::as_slice))
            .filter(|(n, _)| names.contains(n))
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

/// Writes `<out>/reconstructions.png`: one labelled row per (label, images), each row the first
/// ten 28×28 images of its slice, under `title`.
pub fn save_rows(out: &Path, title: &str, rows: &[(&str, &[f32])]) -> Result<()> {
    let pixels: Vec<f32> = rows
        .iter()
        .flat_map(|(_, r)| r[..10 * 784].to_vec())
        .collect();
    let names: Vec<&str> = rows.iter().map(|(n, _)| *n).collect();
    let labels = latent::io::GridLabels {
        title: Some(title),
        rows: &names,
    };
    let path = out.join("reconstructions.png");
    latent::io::save_labelled_grid(path, &pixels, rows.len(), (28, 28), 1, labels)
}

/// A fresh run of `model`, or with `resume` the run saved at `config.checkpoint` continued
/// (its settings, data and architecture checked against this one's).
pub fn start<M: Trainable>(
    model: M,
    config: TrainConfig,
    examples: usize,
    resume: bool,
) -> Result<Trainer<M>> {
    let path = config.checkpoint.clone();
    match path.filter(|_| resume) {
        None => Trainer::new(model, config, examples),
        Some(path) => {
            let t = Trainer::resume(model, config, examples, &path)?;
            println!(
                "resumed {} after epoch {} (step {})",
                path.display(),
                t.epoch,
                t.step
            );
            Ok(t)
        }
    }
}

/// Flags the VQ examples and aae take.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Train the model (and any priors) on the first N training images only, for quick tries
    /// (0: all 60,000; the judge is trained on all of them).
    #[arg(long, default_value_t = 0)]
    pub train_images: usize,
    /// Seed, data folder, output folder and resume (each prior resumes from its own
    /// checkpoint where one was written, from scratch where none was).
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub judge: JudgeArgs,
}

impl Common {
    /// The shared flags checked before anything trains (`batch`: the example's `--batch`).
    pub fn validate(&self, batch: usize) -> Result<()> {
        crate::flags::at_least("--batch", batch, 1)?;
        crate::flags::images("--train-images", self.train_images, batch)?;
        self.judge.validate()?;
        crate::flags::data_folder(self.run.data.as_deref())
    }

    /// The output folder, created.
    pub fn out_dir(&self, example: &str) -> Result<PathBuf> {
        output_folder(self.run.out.as_deref(), example)
    }
}

/// The output folder `--out` (or `out/<name>`), created if missing.
pub fn output_folder(out: Option<&Path>, name: &str) -> Result<std::path::PathBuf> {
    let out = out.map_or_else(|| Path::new("out").join(name), Path::to_path_buf);
    std::fs::create_dir_all(&out).map_err(|source| latent::Error::Io {
        action: "create the output folder",
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

/// Where a run reads and writes (`classifier`, `dfc_vae`, `colorize`, `forecast`): seed, data
/// folder, output folder and resume.
#[derive(clap::Args, Debug, Clone)]
pub struct RunFlags {
    /// Seed of initialisation, data order, noise and any generated data (any integer).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder with the Fashion-MNIST IDX files [default: $LATENT_DATA, else
    /// /usr/share/datasets/fashion-mnist]; a folder named here must exist and hold them.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder [default: out/<example name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from the checkpoints in --out (bit for bit as if never stopped).
    #[arg(long)]
    pub resume: bool,
}

impl RunFlags {
    /// Opens the device and the data and creates the output folder (`out/<name>` by default):
    /// `(engine, data, out)`.
    pub fn open(&self, name: &str) -> Result<(Engine, FashionMnist, PathBuf)> {
        let (engine, out) = self.open_device(name)?;
        let data = FashionMnist::load(self.data.as_deref())?;
        Ok((engine, data, out))
    }

    /// Opens the device and creates the output folder, for a run on other data: `(engine, out)`.
    pub fn open_device(&self, name: &str) -> Result<(Engine, PathBuf)> {
        let engine = Engine::new()?;
        eprintln!("adapter: {}", engine.summary());
        Ok((engine, output_folder(self.out.as_deref(), name)?))
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
