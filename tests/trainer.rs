//! The one trainer on tiny synthetic data: two optimizer groups stepped in phases match their
//! specification bit for bit; checkpoints round-trip and refuse a missing, extra, mis-shaped or
//! non-finite tensor and other data; a run killed mid-epoch resumes to the uninterrupted run's
//! exact state; a NaN parameter stops training naming it. `cargo test --release --test trainer`.

mod common;

use common::TempDir;
use latent::data::{Batches, Split};
use latent::io;
use latent::models::classifier::Classifier;
use latent::nn::{Linear, Module};
use latent::optim::{
    Adam, Batch, Examples, Group, Optimizer, OptimizerConfig, StepInfo, Terms, TrainConfig,
    Trainable, Trainer,
};
use latent::tape::Tape;
use latent::{CheckpointProblem, Engine, Error, Result, Tensor};
use std::path::Path;

/// 24 "images" of 2×2 pixels from a fixed seed, labelled by whether the first pixel is bright.
fn tiny_split() -> Split {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let mut r = StdRng::seed_from_u64(11);
    let images: Vec<f32> = (0..24 * 4).map(|_| r.random_range(0.0..1.0)).collect();
    let labels = images.chunks(4).map(|p| (p[0] > 0.5) as u8).collect();
    Split::new(images, labels, 2, 2).unwrap()
}

/// Two layers trained in two phases, as an adversarial autoencoder's are: phase 0 fits the
/// labels and steps `f`, phase 1 shrinks the outputs and steps `g`. Both phases' backward
/// passes reach both layers, so a gradient left over from one phase would corrupt the next.
struct TwoPhase {
    f: Linear,
    g: Linear,
}

impl TwoPhase {
    fn new(e: &Engine) -> TwoPhase {
        TwoPhase {
            f: Linear::new(e, "f", 4, 3, 1).unwrap(),
            g: Linear::new(e, "g", 3, 2, 2).unwrap(),
        }
    }

    /// Phase 0: cross entropy of g(relu(f(x))); phase 1: mean of g(f(x))².
    fn phase(&self, tape: &Tape, batch: &Batch, phase: usize) -> Result<Terms> {
        let x = tape.input(&batch.x);
        let y = self.g.forward(&self.f.forward(&x, phase == 0)?, false)?;
        Ok(match phase {
            0 => {
                let labels: Vec<u32> = batch.labels.iter().map(|&l| l as u32).collect();
                let l = Tensor::from_slice(tape.engine(), &labels, &[labels.len()])?;
                vec![("fit", y.cross_entropy(&l)?.mean()?)]
            }
            _ => vec![("shrink", y.mul(&y)?.mean()?)],
        })
    }
}

impl Module for TwoPhase {
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.f, &self.g]
    }
}

impl Trainable for TwoPhase {
    fn engine(&self) -> &Engine {
        self.f.weight.value().engine()
    }

    fn describe(&self) -> Vec<(String, String)> {
        vec![("model".into(), "two-phase".into())]
    }

    fn groups(&self) -> Vec<Group> {
        vec![
            Group {
                name: "f",
                params: self.f.params(),
            },
            Group {
                name: "g",
                params: self.g.params(),
            },
        ]
    }

    fn losses(&self, tape: &Tape, batch: &Batch, at: &StepInfo) -> Result<Terms> {
        self.phase(tape, batch, at.phase)
    }
}

fn two_phase_config() -> TrainConfig {
    TrainConfig {
        optimizers: vec![OptimizerConfig::adam(1e-2), OptimizerConfig::adam(3e-3)],
        ..TrainConfig::adam(5, 0.0, 4, "tiny")
    }
}

fn values(m: &dyn Module) -> Vec<Vec<f32>> {
    let named = m.named_tensors();
    named.iter().map(|(_, t)| t.to_vec().unwrap()).collect()
}

#[test]
fn two_optimizer_groups_step_in_phases_as_specified() {
    let e = gpu!();
    let data = tiny_split();
    let mut t = Trainer::new(TwoPhase::new(e), two_phase_config(), data.len()).unwrap();
    let first = t.model.f.weight.value().to_vec::<f32>().unwrap();
    let mut stats = None;
    for _ in 0..2 {
        stats = t.train_epoch(&data).ok();
    }
    let stats = stats.expect("two clean epochs");
    assert_eq!(
        stats.steps, 5,
        "24 examples at batch 5, the last batch kept"
    );
    let names: Vec<&str> = stats.terms.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["fit", "shrink"], "both phases' terms are logged");
    assert!(stats.term("fit").is_finite() && stats.term("shrink") >= 0.0);
    assert_ne!(first, t.model.f.weight.value().to_vec::<f32>().unwrap());

    // The specification, spelled out: per step, phase 0 on a fresh tape steps f with its Adam
    // (lr 1e-2) and forgets g's gradient, phase 1 steps g with its own Adam (lr 3e-3) and
    // forgets f's. Same data order, same init: the trainer must agree bit for bit.
    let spec = TwoPhase::new(e);
    let adam = |p: Vec<_>, lr| {
        let OptimizerConfig::Adam(c) = OptimizerConfig::adam(lr) else {
            unreachable!()
        };
        Adam::new(p, c).unwrap()
    };
    let mut opt_f = adam(spec.f.params(), 1e-2);
    let mut opt_g = adam(spec.g.params(), 3e-3);
    let batches = Batches::new(data.len(), 5, 4).unwrap();
    for epoch in 0..2 {
        let order = batches.epoch(epoch);
        for s in 0..order.len() {
            let batch = data.batch(e, &order, s).unwrap();
            for (phase, (opt, other)) in [(&mut opt_f, &spec.g), (&mut opt_g, &spec.f)]
                .into_iter()
                .enumerate()
            {
                let tape = Tape::new(e);
                let terms = spec.phase(&tape, &batch, phase).unwrap();
                tape.backward(&terms[0].1).unwrap();
                opt.step().unwrap();
                other.params().iter().for_each(|p| p.zero_grad());
            }
            e.flush().unwrap();
        }
    }
    assert!(
        values(&t.model) == values(&spec),
        "the trainer's phases differ from their specification"
    );
}

/// The classifier on 2×2 images: the smallest real model with a checkpoint.
fn classifier(e: &Engine) -> Classifier {
    Classifier::with_hidden(e, 4, &[3], 2, 7).unwrap()
}

fn classifier_config(checkpoint: Option<&Path>) -> TrainConfig {
    TrainConfig {
        checkpoint: checkpoint.map(Path::to_path_buf),
        ..TrainConfig::adam(5, 1e-2, 3, "tiny 24")
    }
}

/// Rewrites the checkpoint at `from` into `to` after `edit` changed its (name, shape, data).
fn rewrite(from: &Path, to: &Path, e: &Engine, edit: impl FnOnce(&mut Vec<Stored>)) {
    let ck = io::load(from).unwrap();
    let mut stored: Vec<Stored> = ck
        .names()
        .iter()
        .map(|&n| {
            let shape = ck.shape(n).unwrap().to_vec();
            (n.to_string(), shape.clone(), ck.tensor(n, &shape).unwrap())
        })
        .collect();
    edit(&mut stored);
    let tensors: Vec<(String, Tensor)> = stored
        .iter()
        .map(|(n, s, v)| (n.clone(), Tensor::from_slice(e, v, s).unwrap()))
        .collect();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    io::save(to, &refs, ck.metadata()).unwrap();
}

type Stored = (String, Vec<usize>, Vec<f32>);

fn resume_problem(e: &Engine, path: &Path, config: TrainConfig) -> CheckpointProblem {
    match Trainer::resume(classifier(e), config, 24, path) {
        Err(Error::Checkpoint { problem, .. }) => problem,
        Err(other) => panic!("expected a checkpoint error, got {other}"),
        Ok(_) => panic!("expected a checkpoint error, the resume succeeded"),
    }
}

#[test]
fn checkpoints_round_trip_and_refuse_what_does_not_fit() {
    let e = gpu!();
    let data = tiny_split();
    let dir = TempDir::new("trainer-ck");
    let path = dir.path("ck.safetensors");
    let mut t = Trainer::new(classifier(e), classifier_config(Some(&path)), 24).unwrap();
    t.train_epoch(&data).unwrap();
    let r = Trainer::resume(classifier(e), classifier_config(None), 24, &path).unwrap();
    assert_eq!((r.step, r.epoch), (t.step, t.epoch));
    assert!(values(&r.model) == values(&t.model), "model differs");
    // The same state saved twice gives the same bytes (metadata in a stable order).
    let again = dir.path("again.safetensors");
    r.save(&again).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );

    let bad = dir.path("bad.safetensors");
    let first = "classifier.0.weight";
    rewrite(&path, &bad, e, |s| s.retain(|(n, _, _)| n != first));
    let p = resume_problem(e, &bad, classifier_config(None));
    assert!(
        matches!(&p, CheckpointProblem::MissingTensor { name, .. } if name == first),
        "{p:?}"
    );

    rewrite(&path, &bad, e, |s| {
        s.push(("classifier.9.bias".into(), vec![2], vec![0.0; 2]))
    });
    let p = resume_problem(e, &bad, classifier_config(None));
    assert!(
        matches!(&p, CheckpointProblem::UnexpectedTensor { name, shape }
            if name == "classifier.9.bias" && shape == &[2]),
        "{p:?}"
    );

    rewrite(&path, &bad, e, |s| {
        let w = s.iter_mut().find(|(n, _, _)| n == first).unwrap();
        w.1 = vec![4, 3];
    });
    let p = resume_problem(e, &bad, classifier_config(None));
    assert!(
        matches!(&p, CheckpointProblem::WrongShape { name, expected, found }
            if name == first && expected == &[3, 4] && found == &[4, 3]),
        "{p:?}"
    );
    let msg = p.to_string();
    assert!(msg.contains("[3, 4]") && msg.contains("[4, 3]"), "{msg}");

    let moment = "optim.model.adam.v.classifier.1.weight";
    rewrite(&path, &bad, e, |s| {
        let v = s.iter_mut().find(|(n, _, _)| n == moment).unwrap();
        v.2[1] = f32::INFINITY;
    });
    let p = resume_problem(e, &bad, classifier_config(None));
    assert!(
        matches!(&p, CheckpointProblem::NonFiniteTensor { name, index: 1, .. } if name == moment),
        "{p:?}"
    );
    // Evaluating such a file (loading the model alone) is refused too.
    rewrite(&path, &bad, e, |s| {
        let v = s.iter_mut().find(|(n, _, _)| n == first).unwrap();
        v.2[0] = f32::NAN;
    });
    let ck = io::load(&bad).unwrap();
    let err = io::restore_module(&ck, &classifier(e)).unwrap_err();
    assert!(err.to_string().contains(first), "{err}");

    let other = TrainConfig {
        data: "tiny 25".into(),
        ..classifier_config(None)
    };
    let p = resume_problem(e, &path, other);
    assert!(
        matches!(&p, CheckpointProblem::MetaMismatch { key, saved, wanted }
            if key == "data" && saved == "tiny 24" && wanted == "tiny 25"),
        "{p:?}"
    );

    // A learning-rate schedule is part of the optimizer's settings: a resume under another
    // one is refused, naming the optimizer; a schedule over no epochs is refused up front.
    let cosine = |epochs| TrainConfig {
        optimizers: vec![OptimizerConfig::AdamCosine {
            config: latent::kernels::adam::AdamConfig {
                lr: 1e-2,
                ..Default::default()
            },
            epochs,
        }],
        ..classifier_config(None)
    };
    let p = resume_problem(e, &path, cosine(3));
    assert!(
        matches!(&p, CheckpointProblem::MetaMismatch { key, .. } if key.starts_with("optimizer")),
        "{p:?}"
    );
    let err = Trainer::new(classifier(e), cosine(0), 24)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("cosine"), "{err}");
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_uninterrupted_state_bit_for_bit() {
    let e = gpu!();
    let data = tiny_split();
    let dir = TempDir::new("trainer-kill");
    let mut straight = Trainer::new(TwoPhase::new(e), two_phase_config(), 24).unwrap();
    for _ in 0..3 {
        straight.train_epoch(&data).unwrap();
    }

    let path = dir.path("ck.safetensors");
    let config = TrainConfig {
        checkpoint: Some(path.clone()),
        ..two_phase_config()
    };
    let mut killed = Trainer::new(TwoPhase::new(e), config.clone(), 24).unwrap();
    killed.train_epoch(&data).unwrap();
    let saved = std::fs::read(&path).unwrap();
    // Killed after 3 of epoch 2's 5 steps: nothing is written, and the trainer stops.
    let stop = killed
        .train_epoch_until(&data, &mut |step| step == 8)
        .unwrap();
    assert!(stop.is_none() && killed.step == 8);
    assert_eq!(std::fs::read(&path).unwrap(), saved, "checkpoint untouched");
    assert!(
        killed.train_epoch(&data).is_err(),
        "an interrupted run refuses to go on"
    );
    drop(killed);

    let mut resumed = Trainer::resume(TwoPhase::new(e), config, 24, &path).unwrap();
    assert_eq!((resumed.epoch, resumed.step), (1, 5));
    while resumed.epoch < 3 {
        resumed.train_epoch(&data).unwrap();
    }
    let (a, b) = (dir.path("a.safetensors"), dir.path("b.safetensors"));
    straight.save(&a).unwrap();
    resumed.save(&b).unwrap();
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "parameters, moments or counters differ after the resume"
    );
}

#[test]
fn a_nan_parameter_stops_training_naming_it_and_keeps_the_last_good_checkpoint() {
    let e = gpu!();
    let data = tiny_split();
    let dir = TempDir::new("trainer-nan");
    let path = dir.path("ck.safetensors");

    // Before any checkpoint: the message says that none exists.
    let mut t = Trainer::new(classifier(e), classifier_config(None), 24).unwrap();
    let bias = t.model.params()[3].clone();
    assert_eq!(bias.name(), "classifier.1.bias");
    bias.value().write_from_slice(&[0.0f32, f32::NAN]).unwrap();
    assert_eq!(
        t.first_non_finite().unwrap().as_deref(),
        Some("classifier.1.bias"),
        "the check names the poisoned tensor"
    );
    let err = t.train_epoch(&data).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Diverged { kept: None, .. }), "{err:?}");
    assert!(
        msg.contains("no checkpoint") && !msg.contains("last good checkpoint"),
        "{msg}"
    );

    // After a good epoch: the NaN is found at the end of the next one, the checkpoint of the
    // good epoch stays byte for byte, and it names the first non-finite tensor.
    let mut t = Trainer::new(classifier(e), classifier_config(Some(&path)), 24).unwrap();
    t.train_epoch(&data).unwrap();
    let good = std::fs::read(&path).unwrap();
    let first = t.model.params()[0].clone();
    let mut w = first.value().to_vec::<f32>().unwrap();
    w[5] = f32::NAN;
    first.value().write_from_slice(&w).unwrap();
    match t.train_epoch(&data) {
        Err(Error::Diverged { tensor, step, kept }) => {
            assert_eq!(tensor, "classifier.0.weight");
            assert_eq!(step, 10, "two epochs of five steps");
            assert_eq!(kept.as_deref(), Some(path.as_path()));
        }
        other => panic!("expected the run to stop, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "the good checkpoint is kept"
    );
}
