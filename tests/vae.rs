//! The MLP VAE trainer end to end on a slice of Fashion-MNIST: loss goes down, a resumed run is
//! bit-for-bit the uninterrupted one, a diverging run stops naming the step, CVAE samples are
//! classified as their label by the in-repo classifier. `cargo test --release --test vae`.

mod common;

use latent::data::{FashionMnist, Split};
use latent::models::vae::{Objective, TrainSettings, Trainer, Vae, VaeConfig};
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

/// An MLP VAE initialised from the tests' seed.
fn mlp(e: &Engine, config: VaeConfig) -> Box<Vae> {
    Box::new(Vae::new(e, config, 3).unwrap())
}

/// Every parameter and Adam moment, read back.
fn state(t: &Trainer) -> Vec<Vec<f32>> {
    let mut v: Vec<Vec<f32>> = t
        .model
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
    let mut t = Trainer::new(mlp(e, VaeConfig::default()), &settings(1e-3), train.len()).unwrap();
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
    let mut straight = Trainer::new(mlp(e, VaeConfig::default()), &s, train.len()).unwrap();
    straight.train_epoch(&train).unwrap();
    straight.train_epoch(&train).unwrap();

    let dir = std::env::temp_dir().join(format!("latent-vae-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.safetensors");
    let mut first = Trainer::new(mlp(e, VaeConfig::default()), &s, train.len()).unwrap();
    first.train_epoch(&train).unwrap();
    first.save(&path).unwrap();
    drop(first);
    let mut resumed =
        Trainer::resume(mlp(e, VaeConfig::default()), &path, &s, train.len()).unwrap();
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
    let err = Trainer::resume(
        mlp(e, VaeConfig::default()),
        &path,
        &settings(2e-3),
        train.len(),
    )
    .err()
    .expect("lr differs");
    assert!(err.to_string().contains("lr"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_diverging_run_stops_with_the_step_named() {
    let Some((e, train)) = data() else { return };
    // An absurd learning rate sends the weights to ±1e30 after the first step.
    let mut t = Trainer::new(mlp(e, VaeConfig::default()), &settings(1e30), train.len()).unwrap();
    match t.train_epoch(&train) {
        Err(Error::NonFinite { step, .. }) => assert!((1..5).contains(&step), "step {step}"),
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
}

#[test]
fn cvae_prior_samples_are_classified_as_their_label() {
    use latent::models::classifier::{Classifier, ClassifierTraining};
    let Some((e, _)) = data() else { return };
    let d = FashionMnist::load(None).unwrap();
    // The judge: the in-repo MLP classifier, two epochs over the training images.
    let mut judge = Classifier::new(e, 784, 10, 1).unwrap();
    let training = ClassifierTraining {
        epochs: 2,
        ..Default::default()
    };
    judge.train(&d.train, &training, |_| {}).unwrap();
    let judge_accuracy = judge.accuracy(&d.test).unwrap();
    eprintln!("judge: {judge_accuracy:.4} of the test images");
    // Measured 0.849 (0.855 with another seed of the data order).
    assert!(judge_accuracy >= 0.8, "judge accuracy {judge_accuracy:.4}");
    let wide = latent::Tensor::zeros(e, &[2, 10], latent::DType::F32).unwrap();
    assert!(matches!(judge.predict(&wide), Err(Error::BadInput { .. })));

    // The CVAE of the `cvae` example (W1, latent 32, label scaled by LABEL_SCALE), 200 steps at
    // B = 128.
    let train = d.train.take(12_800);
    let config = VaeConfig {
        classes: 10,
        ..VaeConfig::default()
    };
    let s = TrainSettings {
        batch: 128,
        ..settings(1e-3)
    };
    let mut t = Trainer::new(mlp(e, config), &s, train.len()).unwrap();
    for _ in 0..2 {
        t.train_epoch(&train).unwrap();
    }
    // Ordinary prior samples z ~ N(0, I), 100 per class, decoded to mean images.
    let a = latent::models::vae::sample_accuracy(&*t.model, &judge, 100, 1.0, 5).unwrap();
    eprintln!(
        "CVAE prior samples classified as their label: {:.3} (per class {:?}; chance 0.1)",
        a.overall, a.per_class
    );
    // Measured 0.959; with the plain one-hot label (label_scale 1) 0.276, as z then carries the
    // class and the decoder has not yet learnt to read the label.
    assert!(
        a.overall >= 0.7,
        "only {:.3} of the conditional samples are classified as their label",
        a.overall
    );
}

#[test]
fn the_conv_vae_trains_and_resumes_bit_for_bit_with_its_running_statistics() {
    use latent::models::conv_vae::ConvVae;
    let Some((e, train)) = data() else { return };
    let s = settings(1e-3);
    let conv = || Box::new(ConvVae::new(e, 8, 5).unwrap());
    let mut straight = Trainer::new(conv(), &s, train.len()).unwrap();
    let first = straight.train_epoch(&train).unwrap();
    let second = straight.train_epoch(&train).unwrap();
    assert!(
        second.recon < first.recon,
        "recon {} -> {}",
        first.recon,
        second.recon
    );

    let dir = std::env::temp_dir().join(format!("latent-conv-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.safetensors");
    let mut half = Trainer::new(conv(), &s, train.len()).unwrap();
    half.train_epoch(&train).unwrap();
    half.save(&path).unwrap();
    drop(half);
    let mut resumed = Trainer::resume(conv(), &path, &s, train.len()).unwrap();
    resumed.train_epoch(&train).unwrap();
    let buffers = |t: &Trainer| -> Vec<Vec<f32>> {
        t.model
            .buffers()
            .iter()
            .map(|(_, b)| b.to_vec().unwrap())
            .collect()
    };
    assert_eq!(
        buffers(&resumed).len(),
        6,
        "three batch norms, mean and variance each"
    );
    assert!(
        buffers(&resumed) == buffers(&straight),
        "running statistics differ after resume"
    );
    assert!(
        state(&resumed) == state(&straight),
        "parameters and moments differ after resume"
    );
    std::fs::remove_dir_all(&dir).ok();
}
