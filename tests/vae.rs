//! The MLP VAE trainer end to end on a slice of Fashion-MNIST: loss goes down, a resumed run is
//! bit-for-bit the uninterrupted one, a diverging run stops naming the step. `cargo test --release --test vae`.

mod common;

use latent::data::{FashionMnist, Split};
use latent::models::vae::{Objective, TrainSettings, Trainer, VaeConfig};
use latent::nn::Module;
use latent::{Engine, Error};

fn settings(lr: f64) -> TrainSettings {
    TrainSettings {
        batch: 64,
        lr,
        beta: 1.0,
        warmup: 10,
        seed: 3,
        objective: Objective::Elbo,
        binarize: false,
    }
}

fn data() -> Option<(&'static Engine, Split)> {
    let e = common::engine()?;
    let d = match FashionMnist::load(None) {
        Ok(d) => d,
        Err(err) if std::env::var_os("LATENT_SKIP_DATA_TESTS").is_some() => {
            eprintln!("skipping: {err}");
            return None;
        }
        Err(err) => panic!("{err}"),
    };
    Some((e, d.train.take(320)))
}

/// Every parameter and Adam moment, read back.
fn state(t: &Trainer) -> Vec<Vec<f32>> {
    let mut v: Vec<Vec<f32>> = t
        .vae
        .params()
        .iter()
        .map(|p| p.value().to_vec().unwrap())
        .collect();
    v.extend(t.adam.state().iter().map(|(_, m)| m.to_vec().unwrap()));
    v
}

#[test]
fn training_lowers_the_loss() {
    let Some((e, train)) = data() else { return };
    let mut t = Trainer::new(e, VaeConfig::default(), &settings(1e-3), train.len()).unwrap();
    let first = t.train_epoch(&train).unwrap();
    let mut last = first.clone();
    for _ in 0..3 {
        last = t.train_epoch(&train).unwrap();
    }
    assert_eq!(first.steps, 5, "320 images at batch 64");
    assert!(
        last.recon < first.recon - 20.0,
        "recon {} -> {}",
        first.recon,
        last.recon
    );
    assert!(first.kl.is_finite() && last.kl >= 0.0);
}

#[test]
fn a_resumed_run_matches_the_uninterrupted_one_bit_for_bit() {
    let Some((e, train)) = data() else { return };
    let s = settings(1e-3);
    let mut straight = Trainer::new(e, VaeConfig::default(), &s, train.len()).unwrap();
    straight.train_epoch(&train).unwrap();
    straight.train_epoch(&train).unwrap();

    let dir = std::env::temp_dir().join(format!("latent-vae-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.safetensors");
    let mut first = Trainer::new(e, VaeConfig::default(), &s, train.len()).unwrap();
    first.train_epoch(&train).unwrap();
    first.save(&path).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(e, &path, &s, train.len()).unwrap();
    assert_eq!((resumed.epoch, resumed.step), (1, 5));
    resumed.train_epoch(&train).unwrap();
    assert_eq!(
        (resumed.epoch, resumed.step),
        (straight.epoch, straight.step)
    );
    assert!(
        state(&resumed) == state(&straight),
        "parameters and moments differ after resume"
    );

    // A resume with other settings is refused, naming the setting.
    let err = Trainer::resume(e, &path, &settings(2e-3), train.len())
        .err()
        .expect("lr differs");
    assert!(err.to_string().contains("lr"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_diverging_run_stops_with_the_step_named() {
    let Some((e, train)) = data() else { return };
    // An absurd learning rate sends the weights to ±1e30 after the first step.
    let mut t = Trainer::new(e, VaeConfig::default(), &settings(1e30), train.len()).unwrap();
    match t.train_epoch(&train) {
        Err(Error::NonFinite { step, .. }) => assert!((1..5).contains(&step), "step {step}"),
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
}
