//! The adversarial autoencoder on tiny synthetic data: each adversarial phase moves only its own
//! group's parameters (snapshots around trainer steps), a small model trains with falling loss,
//! the priors' draws and the Kolmogorov–Smirnov statistic. `cargo test --release --test aae`.

mod common;

use common::rectangles;
use latent::models::aae::{self, Aae, AaeConfig, PHASES, Posterior, PriorKind};
use latent::optim::{Trainable, Trainer};
use latent::tape::Param;

fn small(classes: usize) -> AaeConfig {
    AaeConfig {
        latent: 4,
        classes,
        disc_hidden: 32,
        prior: PriorKind::Normal,
        posterior: Posterior::Deterministic,
    }
}

fn snapshot(params: &[Param]) -> Vec<Vec<f32>> {
    params
        .iter()
        .map(|p| p.value().to_vec::<f32>().unwrap())
        .collect()
}

/// Runs two trainer steps of a fresh model in which only phase `phase` has a learning rate
/// above 0, and returns the (encoder, decoder, discriminator) parameters' before and after.
fn moved_by_phase(phase: usize, posterior: Posterior) -> [bool; 3] {
    let e = common::engine().expect("an adapter");
    let data = rectangles(64, 5);
    let config = AaeConfig {
        posterior,
        ..small(0)
    };
    let model = Aae::new(e, config, 1).unwrap();
    let mut config = aae::train_config(32, (1e-3, 1e-3), 2, "rectangles");
    for (i, o) in config.optimizers.iter_mut().enumerate() {
        if i != phase {
            let latent::optim::OptimizerConfig::Adam(c) = o else {
                panic!("Adam")
            };
            c.lr = 0.0;
        }
    }
    let mut t = Trainer::new(model, config, data.len()).unwrap();
    let parts = |m: &Aae| {
        [
            m.encoder_params(),
            m.decoder_params(),
            m.discriminator_params(),
        ]
    };
    let before: Vec<_> = parts(&t.model).iter().map(|p| snapshot(p)).collect();
    t.train_epoch(&data).unwrap();
    let after: Vec<_> = parts(&t.model).iter().map(|p| snapshot(p)).collect();
    [0, 1, 2].map(|i| before[i] != after[i])
}

#[test]
fn aae_groups_are_the_papers_phases() {
    let Some(e) = common::engine() else { return };
    let model = Aae::new(e, small(0), 1).unwrap();
    let names = |ps: &[Param]| ps.iter().map(|p| p.name().to_string()).collect::<Vec<_>>();
    let groups = model.groups();
    assert_eq!(groups.iter().map(|g| g.name).collect::<Vec<_>>(), PHASES);
    let enc = names(&model.encoder_params());
    let dec = names(&model.decoder_params());
    assert_eq!(names(&groups[0].params), [enc.clone(), dec].concat());
    assert_eq!(
        names(&groups[1].params),
        names(&model.discriminator_params())
    );
    assert_eq!(names(&groups[2].params), enc);
    assert!(enc.iter().all(|n| n.starts_with("encoder.")), "{enc:?}");
}

#[test]
fn aae_discriminator_phase_moves_only_the_discriminator() {
    if common::engine().is_none() {
        return;
    }
    for posterior in [Posterior::Deterministic, Posterior::Gaussian] {
        assert_eq!(moved_by_phase(1, posterior), [false, false, true]);
    }
}

#[test]
fn aae_generator_phase_moves_only_the_encoder() {
    if common::engine().is_none() {
        return;
    }
    for posterior in [Posterior::Deterministic, Posterior::Gaussian] {
        assert_eq!(moved_by_phase(2, posterior), [true, false, false]);
    }
}

/// Five epochs of `model` on `data` at batch 32; checks the reconstruction loss fell by 20 %
/// from the first epoch to the last, and returns the trainer and the last epoch's figures.
fn train_five_epochs(
    model: Aae,
    data: &latent::data::Split,
) -> (Trainer<Aae>, latent::optim::EpochStats) {
    let config = aae::train_config(32, (2e-3, 5e-4), 4, "rectangles");
    let mut t = Trainer::new(model, config, data.len()).unwrap();
    let first = t.train_epoch(data).unwrap();
    for _ in 0..3 {
        t.train_epoch(data).unwrap();
    }
    let last = t.train_epoch(data).unwrap();
    let (r0, r1) = (first.term("recon"), last.term("recon"));
    eprintln!("{:?}: recon {r0:.1} -> {r1:.1}", t.model.config.posterior);
    assert!(r1 < 0.8 * r0, "recon {r0} -> {r1}");
    (t, last)
}

#[test]
fn small_aae_trains_with_falling_reconstruction_loss() {
    let Some(e) = common::engine() else { return };
    let data = rectangles(128, 7);
    for classes in [0, 4] {
        let model = Aae::new(e, small(classes), 3).unwrap();
        let (t, last) = train_five_epochs(model, &data);
        for name in ["disc", "gen"] {
            assert!(last.term(name).is_finite(), "{name} is logged");
        }
        // Codes and generated pixels have their shapes and ranges.
        let x = latent::Tensor::from_slice(e, &data.images()[..4 * 784], &[4, 784]).unwrap();
        let z = t.model.codes(&x).unwrap();
        assert_eq!(z.shape(), &[4, 4]);
        let px = t.model.generate(&z, &data.labels()[..4]).unwrap();
        let px = px.to_vec::<f32>().unwrap();
        assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
        // The codes' batch norm has no learned scale or shift: γ = 1 and β = 0 after training.
        use latent::nn::Module;
        let mut seen = 0;
        for p in t.model.params() {
            let v = p.value().to_vec::<f32>().unwrap();
            match p.name() {
                "encoder.bn.weight" => assert!(v.iter().all(|&g| g == 1.0), "γ {v:?}"),
                "encoder.bn.bias" => assert!(v.iter().all(|&b| b == 0.0), "β {v:?}"),
                _ => continue,
            }
            seen += 1;
        }
        assert_eq!(seen, 2, "the codes' batch norm has γ and β");
    }
}

/// The Gaussian posterior: its log σ² head is an encoder parameter (both phases that train the
/// encoder move it), its draws of q(z|x) repeat for a seed and differ across seeds and from the
/// means, and it trains with falling loss; the deterministic encoder's draws are its codes.
#[test]
fn gaussian_posterior_draws_codes_and_trains() {
    let Some(e) = common::engine() else { return };
    let data = rectangles(128, 7);
    let gaussian = AaeConfig {
        posterior: Posterior::Gaussian,
        ..small(0)
    };
    let model = Aae::new(e, gaussian, 3).unwrap();
    let names: Vec<String> = (model.encoder_params().iter())
        .map(|p| p.name().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("encoder.logvar")),
        "{names:?}"
    );
    assert!(
        model
            .describe()
            .contains(&("posterior".into(), "gaussian".into()))
    );
    let (t, _) = train_five_epochs(model, &data);
    use latent::nn::Module;
    t.model.set_training(false);
    let x = latent::Tensor::from_slice(e, &data.images()[..8 * 784], &[8, 784]).unwrap();
    let draw = |seed| {
        (t.model.sample_codes(&x, seed, 0).unwrap())
            .to_vec::<f32>()
            .unwrap()
    };
    let means = t.model.codes(&x).unwrap().to_vec::<f32>().unwrap();
    let (a, b) = (draw(1), draw(2));
    assert_eq!(a, draw(1), "the same seed draws the same codes");
    assert_ne!(a, b, "other seeds draw other codes");
    assert_ne!(a, means, "draws are not the means");
    assert!(a.iter().all(|v| v.is_finite()));
    let plain = Aae::new(e, small(0), 3).unwrap();
    plain.set_training(false);
    assert_eq!(
        plain
            .sample_codes(&x, 1, 0)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        plain.codes(&x).unwrap().to_vec::<f32>().unwrap()
    );
}

#[test]
fn priors_draw_where_they_should_and_refuse_other_sizes() {
    let n = 4000;
    let normal = PriorKind::Normal.sample(n, 3, 9).unwrap();
    assert_eq!(normal, PriorKind::Normal.sample(n, 3, 9).unwrap(), "seeded");
    assert_ne!(normal, PriorKind::Normal.sample(n, 3, 10).unwrap());
    for j in 0..3 {
        let c: Vec<f64> = normal
            .iter()
            .skip(j)
            .step_by(3)
            .map(|&v| v as f64)
            .collect();
        // 4,000 draws of N(0, 1): the 1 % critical value of the KS statistic is 1.63/√n ≈ 0.026.
        assert!(aae::ks_normal(&c) < 0.026, "dimension {j}");
    }
    let mixture = PriorKind::Mixture.sample(n, 2, 1).unwrap();
    for p in mixture.chunks(2) {
        let r = (p[0] * p[0] + p[1] * p[1]).sqrt();
        // σ = 0.5 per coordinate: 5 σ either side of the circle.
        assert!((r - aae::MIXTURE_RADIUS).abs() < 2.5, "{p:?}");
    }
    let roll = PriorKind::SwissRoll.sample(n, 2, 1).unwrap();
    assert!(roll.iter().all(|v| v.abs() < 4.6), "within ±4 and noise");
    let err = PriorKind::Mixture.sample(1, 8, 0).expect_err("2-D only");
    assert!(err.to_string().contains("2-D"), "{err}");
}

#[test]
fn ks_statistic_against_known_cases() {
    // Φ at known points (tables to 7 digits).
    for (x, want) in [
        (0.0, 0.5),
        (1.0, 0.8413447),
        (-1.96, 0.0249979),
        (3.0, 0.9986501),
    ] {
        assert!((aae::normal_cdf(x) - want).abs() < 2e-7, "Φ({x})");
    }
    // The normal quantiles at (i + ½)/n: the statistic is exactly 1/(2n).
    let n = 1000;
    let quantiles: Vec<f64> = (0..n)
        .map(|i| {
            let p = (i as f64 + 0.5) / n as f64;
            // Bisection of Φ(x) = p.
            let (mut lo, mut hi) = (-10.0, 10.0);
            for _ in 0..100 {
                let mid = 0.5 * (lo + hi);
                if aae::normal_cdf(mid) < p {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            0.5 * (lo + hi)
        })
        .collect();
    assert!((aae::ks_normal(&quantiles) - 0.5 / n as f64).abs() < 1e-6);
    // Shifted by 0.5: sup |Φ(x − 0.5) − Φ(x)| = Φ(0.25) − Φ(−0.25) ≈ 0.1974.
    let shifted: Vec<f64> = quantiles.iter().map(|q| q + 0.5).collect();
    assert!((aae::ks_normal(&shifted) - 0.1974).abs() < 2e-3);
    assert!(aae::ks_normal(&[]).is_nan());
    assert!(aae::ks_normal(&[0.0, f64::NAN]).is_nan());
}

#[test]
fn calibrated_codes_have_the_population_statistics_of_their_images() {
    use latent::nn::Module;
    let Some(e) = common::engine() else { return };
    let data = rectangles(130, 5);
    let model = Aae::new(e, small(0), 11).unwrap();
    model.set_training(false);
    let images = data.images();
    let x = latent::Tensor::from_slice(e, images, &[130, 784]).unwrap();
    let moments = |z: &[f32], j: usize| {
        let c: Vec<f64> = z.iter().skip(j).step_by(4).map(|&v| v as f64).collect();
        let m = c.iter().sum::<f64>() / c.len() as f64;
        let v = c.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (c.len() - 1) as f64;
        (m, v.sqrt())
    };
    // Fresh running statistics (0, 1) do not normalise this encoder's output.
    let before = model.codes(&x).unwrap().to_vec::<f32>().unwrap();
    let off = (0..4)
        .map(|j| moments(&before, j).0.abs())
        .fold(0.0, f64::max);
    let shift = model.calibrate_codes(images, 0).unwrap();
    assert!(
        shift > 0.0 && (shift - off).abs() < 1e-3 * off.max(1.0),
        "shift {shift} vs {off}"
    );
    // γ = 1 and β = 0 at initialisation: eval-mode codes of the same images are standardised,
    // up to batch norm's ε = 1e-5 beside the encoder's variance v: std √(v / (v + ε)). Before,
    // the codes were the encoder's output divided by √(1 + ε).
    let after = model.codes(&x).unwrap().to_vec::<f32>().unwrap();
    for j in 0..4 {
        let (m, s) = moments(&after, j);
        let v = moments(&before, j).1.powi(2) * (1.0 + 1e-5);
        let expected = (v / (v + 1e-5)).sqrt();
        assert!(m.abs() < 1e-3, "dimension {j}: mean {m}");
        assert!(
            (s - expected).abs() < 1e-3,
            "dimension {j}: std {s}, expected {expected}"
        );
    }
    let err = model
        .calibrate_codes(&images[..784], 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("calibrate_codes") && err.contains("two or more"),
        "{err}"
    );
}
