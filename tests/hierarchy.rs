//! The deep hierarchies end to end on a slice of Fashion-MNIST: a tiny Ladder VAE (ladder merge
//! and plain hierarchy) and tiny MLP and convolutional BIVAs lower their loss through the one
//! trainer, a resumed run is bit-for-bit the uninterrupted one (batch-norm running statistics
//! included), the shared evaluator scores them with an IWAE bound below their ELBO's, and its
//! k = 1 bound is the one-sample ELBO of the same draws. `cargo test --release --test
//! hierarchy`.

mod common;

use latent::data::Split;
use latent::models::biva::{Biva, BivaConfig, ConvBivaConfig};
use latent::models::hierarchy::{self, Gaussian, Hierarchy, HierarchyElbo, MIN_VARIANCE, Variance};
use latent::models::ladder::{LadderConfig, LadderVae};
use latent::models::likelihood::{self, EvalSettings, Likelihood, Noise};
use latent::optim::{KlSchedule, TrainConfig, Trainer};
use latent::tape::Tape;
use latent::{Engine, Error, Tensor};
use std::path::Path;

fn data() -> Option<(&'static Engine, Split)> {
    common::fashion_train(320)
}

fn ladder(e: &Engine, ladder: bool, batchnorm: bool) -> LadderVae {
    ladder_with(e, ladder, batchnorm, Variance::Softplus)
}

fn ladder_with(e: &Engine, ladder: bool, batchnorm: bool, variance: Variance) -> LadderVae {
    let config = LadderConfig {
        hidden: vec![64, 32, 16],
        latent: vec![8, 4, 2],
        batchnorm,
        ladder,
        variance,
        ..LadderConfig::default()
    };
    LadderVae::new(e, config, 5).unwrap()
}

fn biva(e: &Engine) -> Biva {
    let config = BivaConfig {
        hidden: [64, 32, 16],
        latent: [8, 4, 2],
        ..BivaConfig::default()
    };
    Biva::new(e, config, 5).unwrap()
}

/// The convolutional BIVA with 8-channel feature maps, spatial latents of 2 channels at 14×14
/// and 7×7, and a top latent of 2.
fn conv_biva(e: &Engine) -> Biva {
    let config = ConvBivaConfig {
        channels: [8, 8],
        latent_channels: [2, 2],
        top_hidden: 16,
        top_latent: 2,
        ..ConvBivaConfig::default()
    };
    Biva::conv(e, config, 5).unwrap()
}

/// A run of `model` on 320 images at batch 64 with 10 steps of warm-up (checkpoint at `ck`).
fn trainer<M: Hierarchy>(
    model: M,
    free_bits: f32,
    ck: Option<&Path>,
    resume: bool,
) -> Trainer<HierarchyElbo<M>> {
    let objective = HierarchyElbo {
        model,
        schedule: KlSchedule {
            beta: 1.0,
            warmup: 10,
        },
        free_bits,
    };
    let config = TrainConfig {
        binarize: true,
        checkpoint: ck.map(Path::to_path_buf),
        ..TrainConfig::adam(64, 2e-3, 3, "320 test images")
    };
    let resume_from = ck.filter(|_| resume);
    hierarchy::trainer(objective, config, 320, resume_from).unwrap()
}

/// Trains 4 epochs and checks that the reconstruction term falls and every KL term is finite.
fn lowers_its_loss<M: Hierarchy>(what: &str, model: M, free_bits: f32, train: &Split) {
    let mut t = trainer(model, free_bits, None, false);
    let first = t.train_epoch(train).unwrap();
    let mut last = first.clone();
    for _ in 0..3 {
        last = t.train_epoch(train).unwrap();
    }
    let (r0, r1) = (first.term("recon"), last.term("recon"));
    assert!(r1 < r0 - 20.0, "{what}: recon {r0} -> {r1}");
    for name in t.model.model.kl_terms() {
        let kl = last.term(name);
        assert!(kl.is_finite(), "{what}: {name} = {kl}");
    }
    // Analytic KLs are ≥ 0; the one-sample terms of bottom-up layers may dip below on a batch.
    assert!(
        last.term("kl") > 0.0,
        "{what}: total KL {}",
        last.term("kl")
    );
}

#[test]
fn a_tiny_ladder_vae_plain_hierarchy_and_biva_lower_their_loss() {
    let Some((e, train)) = data() else { return };
    lowers_its_loss("ladder", ladder(e, true, true), 0.0, &train);
    lowers_its_loss("plain hierarchy", ladder(e, false, false), 0.0, &train);
    let exp = ladder_with(e, true, false, Variance::Exp);
    lowers_its_loss("ladder, exp variance", exp, 0.0, &train);
    lowers_its_loss("biva", biva(e), 0.5, &train);
    lowers_its_loss("conv biva", conv_biva(e), 0.5, &train);
}

/// Trains one epoch with a checkpoint, resumes it into a fresh model and trains a second; the
/// checkpoint must equal that of two epochs in one go.
fn resumes_bit_for_bit<M: Hierarchy>(what: &str, make: impl Fn() -> M, train: &Split) {
    let dir = common::TempDir::new("hierarchy-resume");
    let mut straight = trainer(make(), 0.5, None, false);
    straight.train_epoch(train).unwrap();
    straight.train_epoch(train).unwrap();
    let path = dir.path("checkpoint.safetensors");
    let mut first = trainer(make(), 0.5, Some(&path), false);
    first.train_epoch(train).unwrap();
    drop(first);
    let mut resumed = trainer(make(), 0.5, Some(&path), true);
    assert_eq!((resumed.epoch, resumed.step), (1, 5), "{what}");
    resumed.train_epoch(train).unwrap();
    let bytes = |t: &Trainer<HierarchyElbo<M>>, name: &str| {
        t.save(&dir.path(name)).unwrap();
        std::fs::read(dir.path(name)).unwrap()
    };
    assert!(
        bytes(&resumed, "a") == bytes(&straight, "b"),
        "{what}: parameters, running statistics or moments differ after resume"
    );
}

#[test]
fn resumed_ladder_and_biva_runs_match_uninterrupted_ones_bit_for_bit() {
    let Some((e, train)) = data() else { return };
    resumes_bit_for_bit("ladder", || ladder(e, true, true), &train);
    resumes_bit_for_bit("biva", || biva(e), &train);
    resumes_bit_for_bit("conv biva", || conv_biva(e), &train);
    // A checkpoint of another architecture is refused before anything trains.
    let dir = common::TempDir::new("hierarchy-refuse");
    let path = dir.path("checkpoint.safetensors");
    trainer(ladder(e, true, true), 0.5, Some(&path), false)
        .train_epoch(&train)
        .unwrap();
    let objective = HierarchyElbo {
        model: ladder(e, true, false),
        schedule: KlSchedule {
            beta: 1.0,
            warmup: 10,
        },
        free_bits: 0.5,
    };
    let config = TrainConfig {
        binarize: true,
        ..TrainConfig::adam(64, 2e-3, 3, "320 test images")
    };
    let err = hierarchy::trainer(objective, config.clone(), 320, Some(&path)).err();
    assert!(
        format!("{err:?}").contains("batchnorm"),
        "expected a refusal naming batchnorm, got {err:?}"
    );
    // The same weights read as the other variance parameterisation would be a silent wrong model.
    let objective = HierarchyElbo {
        model: ladder_with(e, true, true, Variance::Exp),
        schedule: KlSchedule {
            beta: 1.0,
            warmup: 10,
        },
        free_bits: 0.5,
    };
    let err = hierarchy::trainer(objective, config, 320, Some(&path)).err();
    assert!(
        format!("{err:?}").contains("variance"),
        "expected a refusal naming variance, got {err:?}"
    );
}

/// The softplus head gives log(softplus(a) + MIN_VARIANCE) of the plain head's a (same weights),
/// finite and at or above the floor where a is far below zero, and it grows as log a above it.
#[test]
fn the_softplus_variance_head_is_bounded_below_and_matches_its_formula() {
    let Some(e) = common::engine() else { return };
    let head = |variance| {
        let mut next = 0u64;
        let mut seed = || {
            next += 1;
            next
        };
        Gaussian::new(e, "g", 7, 5, &mut seed)
            .unwrap()
            .with_variance(variance)
    };
    let (plain, soft) = (head(Variance::Exp), head(Variance::Softplus));
    // Rows from ordinary to extreme inputs (awkward sizes: 3 rows, 7 inputs, 5 units).
    let h: Vec<f32> = (0..21)
        .map(|i| (i as f32 - 10.0) * [0.1, 30.0, 3000.0][i / 7])
        .collect();
    let x = Tensor::from_slice(e, &h, &[3, 7]).unwrap();
    let tape = Tape::no_grad(e);
    let a: Vec<f32> = plain
        .forward(&tape.input(&x))
        .unwrap()
        .1
        .value()
        .to_vec()
        .unwrap();
    let got: Vec<f32> = soft
        .forward(&tape.input(&x))
        .unwrap()
        .1
        .value()
        .to_vec()
        .unwrap();
    let floor = MIN_VARIANCE.ln();
    let mut saw_floor = false;
    for (i, (&a, &g)) in a.iter().zip(&got).enumerate() {
        let softplus = (a as f64).max(0.0) + (-(a as f64).abs()).exp().ln_1p();
        let want = (softplus + MIN_VARIANCE as f64).ln();
        assert!(g.is_finite() && g >= floor - 1e-5, "unit {i}: a {a} -> {g}");
        assert!(
            (g as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
            "unit {i}: a {a}: log σ² {g}, want {want}"
        );
        saw_floor |= a < -100.0;
    }
    assert!(
        saw_floor,
        "the extreme rows must drive some unit far below zero"
    );
}

#[test]
fn the_shared_evaluator_scores_hierarchies_with_an_iwae_bound_below_their_elbo() {
    let Some((e, train)) = data() else { return };
    let mut lv = trainer(ladder(e, true, true), 0.0, None, false);
    let mut bv = trainer(biva(e), 0.5, None, false);
    let mut cv = trainer(conv_biva(e), 0.5, None, false);
    for _ in 0..3 {
        lv.train_epoch(&train).unwrap();
        bv.train_epoch(&train).unwrap();
        cv.train_epoch(&train).unwrap();
    }
    let images = train.take(64);
    let settings = EvalSettings {
        k: 50,
        iwae_images: 64,
        seed: 1,
    };
    for (what, report) in [
        (
            "ladder",
            likelihood::evaluate(&lv.model.model, &images, &settings).unwrap(),
        ),
        (
            "biva",
            likelihood::evaluate(&bv.model.model, &images, &settings).unwrap(),
        ),
        (
            "conv biva",
            likelihood::evaluate(&cv.model.model, &images, &settings).unwrap(),
        ),
    ] {
        assert!(report.iwae_nll.is_finite(), "{what}");
        // The IWAE-50 bound is tighter than the one-sample ELBO (up to the ELBO's noise).
        assert!(
            report.iwae_nll < report.neg_elbo + 1.0,
            "{what}: IWAE-50 {} against -ELBO {}",
            report.iwae_nll,
            report.neg_elbo
        );
        let layers = report.layers.len();
        assert_eq!(layers, if what == "ladder" { 3 } else { 5 }, "{what}");
        if what == "conv biva" {
            // Spatial latents: every position and channel is a unit of its layer.
            let units: Vec<usize> = report.layers.iter().map(|l| l.units).collect();
            assert_eq!(units, [2 * 196, 2 * 196, 2 * 49, 2 * 49, 2], "{what}");
        }
    }
    // The Fréchet score's samples: 501 rows (two chunks), Bernoulli means, the same for a seed.
    fn samples<M: Hierarchy>(what: &str, model: &M, seed: u64) -> Vec<f32> {
        let t = hierarchy::ancestral_samples(model, 501, seed).unwrap();
        assert_eq!(t.shape(), &[501, 784], "{what}");
        t.to_vec().unwrap()
    }
    let check = |what: &str, a: Vec<f32>, b: Vec<f32>, c: Vec<f32>| {
        assert!(
            a.iter().all(|p| (0.0..=1.0).contains(p)),
            "{what}: means outside [0, 1]"
        );
        assert_eq!(a, b, "{what}: the same seed must give the same samples");
        assert_ne!(a[..784], a[784..1568], "{what}: two draws must differ");
        assert_ne!(a, c, "{what}: another seed must give other samples");
    };
    let (l, c) = (&lv.model.model, &cv.model.model);
    check(
        "ladder",
        samples("ladder", l, 3),
        samples("ladder", l, 3),
        samples("ladder", l, 4),
    );
    check(
        "conv biva",
        samples("conv", c, 3),
        samples("conv", c, 3),
        samples("conv", c, 4),
    );
}

/// −log w = −log p(x | z) + Σ over layers and units of log q(z) − log p(z), in f64 from what the
/// model returned (log q in its ε form, log 2π cancelled), averaged over the rows.
fn one_sample_neg_elbo(s: &likelihood::Sampled) -> f64 {
    let host = |t: &latent::Tensor| -> Vec<f64> {
        t.to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    };
    let mut total: f64 = host(&s.nll_x).iter().sum();
    let rows = s.nll_x.shape()[0];
    for l in &s.layers {
        let (z, eps, lv) = (host(&l.z), host(&l.eps), host(&l.logvar));
        let (mp, vp) = match &l.prior {
            Some((m, v)) => (host(m), host(v)),
            None => (vec![0.0; z.len()], vec![0.0; z.len()]),
        };
        for i in 0..z.len() {
            let log_q = -0.5 * (eps[i] * eps[i] + lv[i]);
            let log_p = -0.5 * ((z[i] - mp[i]).powi(2) * (-vp[i]).exp() + vp[i]);
            total += log_q - log_p;
        }
    }
    total / rows as f64
}

#[test]
fn the_k1_iwae_bound_of_each_hierarchy_is_its_one_sample_elbo_on_the_same_draws() {
    let Some((e, train)) = data() else { return };
    let images = train.take(64);
    let models: [(&str, Box<dyn Likelihood>); 3] = [
        ("ladder", Box::new(ladder(e, true, true))),
        ("biva", Box::new(biva(e))),
        ("conv biva", Box::new(conv_biva(e))),
    ];
    for (what, model) in models {
        let seed = 11;
        // One pass of 64 rows: the evaluator draws from stream `seed` from its start, as here.
        assert!(model.rows_per_pass() >= 64, "{what}");
        let bound = likelihood::iwae(&*model, &images, seed, 1).unwrap();
        let x = images.upload(e, 0..64).unwrap();
        let s = model
            .sample_layers(&x, &[], 1, &Noise::new(seed, 0))
            .unwrap();
        let twin = one_sample_neg_elbo(&s);
        // f32 log weights of a few hundred nats: 1e-4 relative is a few ulps of each sum.
        assert!(
            (bound - twin).abs() <= 1e-4 * twin.abs(),
            "{what}: IWAE-1 {bound} against the one-sample -ELBO {twin}"
        );
        // A different stream gives other draws: the comparison above is not vacuous.
        let other = likelihood::iwae(&*model, &images, seed + 1, 1).unwrap();
        assert!((other - bound).abs() > 1e-3, "{what}: {other} = {bound}");
    }
}

#[test]
fn bad_hierarchy_configurations_are_typed_errors() {
    let Some(e) = common::engine() else { return };
    let config = LadderConfig {
        hidden: vec![64, 32],
        latent: vec![8, 4, 2],
        ..LadderConfig::default()
    };
    let err = LadderVae::new(e, config, 0).err();
    assert!(matches!(err, Some(Error::BadInput { .. })), "{err:?}");
    let config = BivaConfig {
        latent: [8, 0, 2],
        ..BivaConfig::default()
    };
    let err = Biva::new(e, config, 0).err();
    assert!(matches!(err, Some(Error::BadInput { .. })), "{err:?}");
    // Two halvings need a side divisible by 4; every width at least 1.
    for config in [
        ConvBivaConfig {
            side: 30,
            ..ConvBivaConfig::default()
        },
        ConvBivaConfig {
            latent_channels: [4, 0],
            ..ConvBivaConfig::default()
        },
    ] {
        let err = Biva::conv(e, config, 0).err();
        assert!(matches!(err, Some(Error::BadInput { .. })), "{err:?}");
    }
}
