//! A small image classifier (an MLP, 784 → 256 → 10 by default) trained with cross entropy by
//! `optim::Trainer`; the smallest real model with a checkpoint (the trainer's tests use it). The
//! judge of generated samples is the conv `models::feature_net`. Tested by
//! `cargo test --release --test trainer`.

use crate::data::Split;
use crate::engine::{Engine, Error, Result, Tensor};
use crate::nn::{Linear, Module, layer_seed};
use crate::optim::{Batch, StepInfo, Terms, TrainConfig, Trainable};
use crate::tape::{Tape, Var};

/// Hidden width of [`Classifier::new`]: one layer of 256 reaches about 85 % on Fashion-MNIST's
/// test images after one epoch, in a few seconds on lavapipe.
pub const HIDDEN: usize = 256;

/// How a classifier trains.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierTraining {
    pub epochs: u64,
    pub batch: usize,
    /// Adam learning rate (PyTorch's other defaults).
    pub lr: f64,
    /// Seed of the data order.
    pub seed: u64,
}

impl ClassifierTraining {
    /// The trainer's configuration (Adam, every batch kept, no checkpoint); `data` is the
    /// training data's identity.
    pub fn config(&self, data: impl Into<String>) -> TrainConfig {
        TrainConfig {
            name: "classifier".into(),
            ..TrainConfig::adam(self.batch, self.lr, self.seed, data)
        }
    }
}

impl Default for ClassifierTraining {
    fn default() -> Self {
        ClassifierTraining {
            epochs: 2,
            batch: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// An MLP from `input` features (pixels in [0, 1]) to the logits of `classes` classes, ReLU
/// between layers, PyTorch-default init.
pub struct Classifier {
    layers: Vec<Linear>,
    input: usize,
    classes: usize,
}

impl Classifier {
    /// `input` → [`HIDDEN`] → `classes`, initialised from `seed`.
    pub fn new(engine: &Engine, input: usize, classes: usize, seed: u64) -> Result<Classifier> {
        Self::with_hidden(engine, input, &[HIDDEN], classes, seed)
    }

    /// `input` → `hidden[0]` → … → `classes`.
    pub fn with_hidden(
        engine: &Engine,
        input: usize,
        hidden: &[usize],
        classes: usize,
        seed: u64,
    ) -> Result<Classifier> {
        if input == 0 || classes < 2 || hidden.contains(&0) {
            return Err(Error::bad(
                "Classifier::new",
                format!(
                    "needs inputs, two classes or more and no empty layer, got {input} → {hidden:?} → {classes}"
                ),
            ));
        }
        let widths: Vec<usize> = std::iter::once(input)
            .chain(hidden.iter().copied())
            .chain([classes])
            .collect();
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let s = layer_seed(seed, i as u64 + 1);
                Linear::new(engine, &format!("classifier.{i}"), w[0], w[1], s)
            })
            .collect::<Result<_>>()?;
        Ok(Classifier {
            layers,
            input,
            classes,
        })
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Logits [B, classes] of `x` [B, input].
    pub fn logits(&self, x: &Var) -> Result<Var> {
        let last = self.layers.len() - 1;
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h, i < last)?;
        }
        Ok(h)
    }

    /// Batch-mean cross entropy of `x` `[B, input]` against u32 `labels` `[B]`, `[1]`.
    pub fn loss(&self, x: &Var, labels: &Tensor) -> Result<Var> {
        self.logits(x)?.cross_entropy(labels)?.mean()
    }

    /// The most likely class of each row of `x` [n, input].
    pub fn predict(&self, x: &Tensor) -> Result<Vec<u32>> {
        if x.shape().len() != 2 {
            return Err(Error::bad(
                "Classifier::predict",
                format!("expects [n, {}], got {:?}", self.input, x.shape()),
            ));
        }
        self.check_input("Classifier::predict", x.shape()[1])?;
        let tape = Tape::no_grad(x.engine());
        let logits = self.logits(&tape.input(x))?.value().to_vec::<f32>()?;
        Ok(logits
            .chunks(self.classes)
            .map(|row| {
                let best = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]));
                best.unwrap_or(0) as u32
            })
            .collect())
    }

    /// The fraction of `split` classified as labelled (in chunks of 1,000 images).
    pub fn accuracy(&self, split: &Split) -> Result<f64> {
        self.check_input("Classifier::accuracy", split.pixels_per_image())?;
        if split.is_empty() {
            return Err(Error::bad("Classifier::accuracy", "no images"));
        }
        let mut right = 0usize;
        for start in (0..split.len()).step_by(1000) {
            let n = 1000.min(split.len() - start);
            let images = &split.images()[start * self.input..(start + n) * self.input];
            let x = Tensor::from_slice(self.engine(), images, &[n, self.input])?;
            let guesses = self.predict(&x)?;
            let labels = &split.labels()[start..start + n];
            right += guesses
                .iter()
                .zip(labels)
                .filter(|&(&g, &y)| g == y as u32)
                .count();
        }
        Ok(right as f64 / split.len() as f64)
    }

    fn check_input(&self, op: &'static str, got: usize) -> Result<()> {
        if got == self.input {
            Ok(())
        } else {
            Err(Error::bad(
                op,
                format!("the classifier takes {} inputs, got {got}", self.input),
            ))
        }
    }
}

impl Module for Classifier {
    fn children(&self) -> Vec<&dyn Module> {
        self.layers.iter().map(|l| l as &dyn Module).collect()
    }
}

impl Trainable for Classifier {
    fn engine(&self) -> &Engine {
        self.layers[0].weight.value().engine()
    }

    fn describe(&self) -> Vec<(String, String)> {
        let widths: Vec<String> = self
            .layers
            .iter()
            .map(|l| l.weight.value().shape()[1].to_string())
            .chain([self.classes.to_string()])
            .collect();
        vec![
            ("model".into(), "mlp-classifier".into()),
            ("widths".into(), widths.join("-")),
        ]
    }

    /// `loss`: the batch-mean cross entropy of the images against their labels, nats.
    fn losses(&self, tape: &Tape, batch: &Batch, _at: &StepInfo) -> Result<Terms> {
        self.check_input(
            "Classifier::losses",
            batch.x.numel() / batch.labels.len().max(1),
        )?;
        let labels: Vec<u32> = batch.labels.iter().map(|&l| l as u32).collect();
        let y = Tensor::from_slice(tape.engine(), &labels, &[labels.len()])?;
        Ok(vec![("loss", self.loss(&tape.input(&batch.x), &y)?)])
    }
}
