//! The feature network, the Fréchet score and DFC-VAE: the Fréchet distance against closed forms
//! (non-commuting covariances included), the Jacobi eigensolver, feature statistics, the saved
//! network refusing other data, the perceptual loss's gradient through the frozen network
//! against finite differences, and a small DFC-VAE whose loss falls.
//! `cargo test --release --test feature_net`.

mod common;

use latent::data::{FashionMnist, Split};
use latent::models::conv_vae::ConvVae;
use latent::models::dfc_vae::{DfcVae, FeatureLayers, perceptual_loss};
use latent::models::feature_net::{Augment, FeatureNet, FeatureNetConfig};
use latent::models::fid::{FeatureStats, frechet_distance, sqrt_psd, symmetric_eigen};
use latent::nn::Module;
use latent::optim::{TrainConfig, Trainable, Trainer};
use latent::tape::{Param, Tape};
use latent::{CheckpointProblem, Error, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Gaussian statistics given directly (the count does not enter the distance).
fn stats(mean: Vec<f64>, cov: Vec<f64>) -> FeatureStats {
    FeatureStats {
        count: 2,
        dim: mean.len(),
        mean,
        cov,
    }
}

/// Closed form of tr (S1^½ S2 S1^½)^½ for 2×2 covariances: the matrix M = S1^½ S2 S1^½ has
/// tr M = tr(S1 S2) and det M = det S1 · det S2, and a 2×2 PSD M has
/// tr √M = √(tr M + 2 √det M).
fn cross_term_2x2(a: [f64; 4], b: [f64; 4]) -> f64 {
    let tr_ab = a[0] * b[0] + a[1] * b[2] + a[2] * b[1] + a[3] * b[3];
    let det = |m: [f64; 4]| m[0] * m[3] - m[1] * m[2];
    (tr_ab + 2.0 * (det(a) * det(b)).sqrt()).sqrt()
}

#[test]
fn frechet_distance_matches_the_closed_form_of_two_gaussians() {
    // Non-commuting covariances (S1 S2 ≠ S2 S1) and different means.
    let s1 = [2.0, 0.6, 0.6, 1.0];
    let s2 = [1.0, -0.4, -0.4, 3.0];
    let (m1, m2) = (vec![0.5, -1.0], vec![-0.25, 2.0]);
    let want = (0.75f64.powi(2) + 3.0f64.powi(2)) + (2.0 + 1.0) + (1.0 + 3.0)
        - 2.0 * cross_term_2x2(s1, s2);
    let got = frechet_distance(&stats(m1.clone(), s1.to_vec()), &stats(m2, s2.to_vec())).unwrap();
    // f64 throughout: agreement to rounding.
    assert!((got - want).abs() < 1e-10, "{got} vs closed form {want}");
    // A Gaussian against itself: 0.
    let same = frechet_distance(&stats(m1.clone(), s1.to_vec()), &stats(m1, s1.to_vec())).unwrap();
    assert!(same.abs() < 1e-10, "{same}");

    // 12 dimensions: six independent 2×2 blocks, each pair non-commuting, the blocks hidden by
    // the same orthogonal change of basis Q on both sides (the distance is invariant under it),
    // so the Jacobi solver works on dense matrices; the distance is the sum of the blocks'.
    let n = 12;
    let mut r = StdRng::seed_from_u64(3);
    let mut a = vec![0.0; n * n];
    let mut b = vec![0.0; n * n];
    let mut want = 0.0;
    for k in 0..6 {
        let spd = |r: &mut StdRng| {
            let (x, y, z) = (
                r.random_range(0.3..2.0),
                r.random_range(-0.5..0.5),
                r.random_range(0.3..2.0),
            );
            [x * x + y * y, x * y + y * z, x * y + y * z, y * y + z * z]
        };
        let (ba, bb) = (spd(&mut r), spd(&mut r));
        for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            a[(2 * k + i) * n + 2 * k + j] = ba[2 * i + j];
            b[(2 * k + i) * n + 2 * k + j] = bb[2 * i + j];
        }
        want += ba[0] + ba[3] + bb[0] + bb[3] - 2.0 * cross_term_2x2(ba, bb);
    }
    let q = random_orthogonal(n, &mut r);
    let rotate = |m: &[f64]| mul(&mul(&q, m, n), &transpose(&q, n), n);
    let got = frechet_distance(
        &stats(vec![0.0; n], rotate(&a)),
        &stats(vec![0.0; n], rotate(&b)),
    )
    .unwrap();
    assert!(
        (got - want).abs() < 1e-8 * want.max(1.0),
        "{got} vs closed form {want}"
    );
}

#[test]
fn jacobi_eigenvectors_rebuild_the_matrix_and_the_square_root_squares_back() {
    let n = 30;
    let mut r = StdRng::seed_from_u64(9);
    let g: Vec<f64> = (0..n * n).map(|_| r.random_range(-1.0..1.0)).collect();
    let a = mul(&g, &transpose(&g, n), n); // symmetric positive semi-definite
    let (lambda, v) = symmetric_eigen(&a, n).unwrap();
    let mut rebuilt = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            rebuilt[i * n + j] = (0..n)
                .map(|k| v[i * n + k] * lambda[k] * v[j * n + k])
                .sum();
        }
    }
    let err = max_diff(&rebuilt, &a);
    assert!(err < 1e-9, "V diag(λ) Vᵀ differs from A by {err}");
    let root = sqrt_psd(&a, n).unwrap();
    let err = max_diff(&mul(&root, &root, n), &a);
    assert!(err < 1e-8, "√A·√A differs from A by {err}");
    assert!(symmetric_eigen(&a, n + 1).is_err());
}

#[test]
fn feature_statistics_are_the_unbiased_mean_and_covariance() {
    // Rows (1, 2), (3, 2), (2, 5): mean (2, 3); deviations (−1, −1), (1, −1), (0, 2).
    let s = FeatureStats::of(&[1.0, 2.0, 3.0, 2.0, 2.0, 5.0], 2).unwrap();
    assert_eq!(s.mean, vec![2.0, 3.0]);
    assert_eq!(s.cov, vec![1.0, 0.0, 0.0, 3.0]);
    assert!(
        FeatureStats::of(&[1.0, 2.0], 2).is_err(),
        "one row has no covariance"
    );
    assert!(
        FeatureStats::of(&[1.0, f32::NAN, 3.0, 2.0], 2).is_err(),
        "NaN refused"
    );
}

fn tiny_net(e: &latent::Engine, side: usize, seed: u64) -> FeatureNet {
    let config = FeatureNetConfig {
        side,
        channels: [3, 4, 4],
        hidden: 6,
        classes: 3,
    };
    FeatureNet::new(e, config, seed).unwrap()
}

/// `n` random images of `side`² pixels in (0.05, 0.95) with labels 0…2.
fn random_split(n: usize, side: usize, seed: u64) -> Split {
    let mut r = StdRng::seed_from_u64(seed);
    let images = (0..n * side * side)
        .map(|_| r.random_range(0.05..0.95))
        .collect();
    let labels = (0..n).map(|i| (i % 3) as u8).collect();
    Split::new(images, labels, side, side).unwrap()
}

/// A few training steps (batch statistics move the running statistics away from 0 and 1), so
/// that the frozen network's evaluation-mode batch norm is not the identity.
fn trained_tiny_net(e: &latent::Engine, side: usize) -> FeatureNet {
    let data = random_split(48, side, 4);
    let mut t = Trainer::new(
        tiny_net(e, side, 2),
        TrainConfig::adam(16, 1e-2, 1, "random"),
        48,
    )
    .unwrap();
    t.train_epoch(&data).unwrap();
    t.model
}

#[test]
fn perceptual_loss_gradient_through_the_frozen_network_matches_finite_differences() {
    let e = gpu!();
    let (side, b) = (8, 2);
    let net = trained_tiny_net(e, side);
    net.freeze();
    let x = random_split(b, side, 7);
    let xhat0 = random_split(b, side, 8).images().to_vec();
    let target = Tensor::from_slice(e, x.images(), &[b, side * side]).unwrap();
    for (layers, alpha) in [([1, 2, 3], [1.0, 0.5, 2.0]), ([3, 4, 5], [0.7, 1.0, 1.5])] {
        let loss_at = |v: &[f32]| -> f64 {
            let tape = Tape::no_grad(e);
            let xh = tape.input(&Tensor::from_slice(e, v, &[b, side * side]).unwrap());
            let l = perceptual_loss(&net, &tape.input(&target), &xh, &layers, &alpha).unwrap();
            l.value().to_vec::<f32>().unwrap()[0] as f64
        };
        let p = Param::new(
            "xhat",
            Tensor::from_slice(e, &xhat0, &[b, side * side]).unwrap(),
        )
        .unwrap();
        let tape = Tape::new(e);
        let l =
            perceptual_loss(&net, &tape.input(&target), &tape.param(&p), &layers, &alpha).unwrap();
        tape.backward(&l).unwrap();
        let grad = p.grad().to_vec::<f32>().unwrap();
        for q in net.params() {
            assert!(
                !q.has_grad(),
                "frozen parameter {} received a gradient",
                q.name()
            );
        }
        // Central differences in f32 with h = 1e-2 (ReLU kinks and f32 rounding of a loss of
        // order 1–10): agreement within 3 % of the largest gradient component.
        let scale = grad.iter().fold(0f32, |m, g| m.max(g.abs())) as f64;
        assert!(scale > 0.0);
        let h = 1e-2f32;
        for i in (0..b * side * side).step_by(11) {
            let mut plus = xhat0.clone();
            plus[i] += h;
            let mut minus = xhat0.clone();
            minus[i] -= h;
            let fd = (loss_at(&plus) - loss_at(&minus)) / (2.0 * h as f64);
            assert!(
                (fd - grad[i] as f64).abs() <= 0.03 * scale,
                "layers {layers:?}, pixel {i}: backward {} vs finite difference {fd} (scale {scale})",
                grad[i]
            );
        }
    }
}

#[test]
fn a_saved_feature_network_loads_back_and_refuses_other_data() {
    let e = gpu!();
    let net = trained_tiny_net(e, 8);
    let dir = common::TempDir::new("feature-net");
    let path = dir.path("net.safetensors");
    net.save(&path, "random 48", 0.5).unwrap();
    let (back, accuracy) = FeatureNet::load(e, &path, "random 48").unwrap();
    assert_eq!(accuracy, 0.5);
    let x = Tensor::from_slice(e, random_split(5, 8, 1).images(), &[5, 64]).unwrap();
    assert_eq!(net.penultimate(&x).unwrap(), back.penultimate(&x).unwrap());
    match FeatureNet::load(e, &path, "other data") {
        Err(Error::Checkpoint {
            problem: CheckpointProblem::MetaMismatch { key, .. },
            ..
        }) => assert_eq!(key, "data"),
        other => panic!("expected a data mismatch, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        net.predict(&Tensor::zeros(e, &[2, 10], latent::DType::F32).unwrap()),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn a_small_dfc_vae_trains_with_falling_loss_and_leaves_the_feature_network_alone() {
    let e = gpu!();
    let d = FashionMnist::load(None).unwrap();
    let train = d.train.take(640);
    let net = trained_tiny_net(e, 28);
    let before: Vec<Vec<f32>> = net
        .named_tensors()
        .iter()
        .map(|(_, t)| t.to_vec::<f32>().unwrap())
        .collect();
    let model = DfcVae::new(
        ConvVae::new(e, 8, 1).unwrap(),
        net,
        "tiny".into(),
        FeatureLayers::Shallow,
        [1.0; 3],
        1.0,
    );
    let mut t = Trainer::new(
        model,
        TrainConfig::adam(32, 2e-3, 5, "640 images"),
        train.len(),
    )
    .unwrap();
    let mut losses = Vec::new();
    for _ in 0..2 {
        losses.extend(t.train_epoch(&train).unwrap().steps_of("loss").to_vec());
    }
    let head: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let tail: f32 = losses[losses.len() - 5..].iter().sum::<f32>() / 5.0;
    eprintln!("DFC-VAE loss: first five steps {head:.3}, last five {tail:.3}");
    assert!(tail < 0.8 * head, "loss fell only from {head} to {tail}");
    let after: Vec<Vec<f32>> = (t.model.feature_net().named_tensors().iter())
        .map(|(_, t)| t.to_vec::<f32>().unwrap())
        .collect();
    assert_eq!(
        before, after,
        "the frozen network's weights or running statistics changed"
    );
}

/// With a pixel weight w the DFC-VAE's loss is perceptual + β·KL + w·(−log p(x|z)) at every
/// step, the pixel term is a Bernoulli NLL in nats (784·ln 2 for an untrained decoder's
/// logits near 0), and a negative or NaN weight is refused.
#[test]
fn the_pixel_term_joins_the_dfc_loss_with_its_weight() {
    let e = gpu!();
    let d = FashionMnist::load(None).unwrap();
    let train = d.train.take(96);
    let build = || {
        DfcVae::new(
            ConvVae::new(e, 8, 1).unwrap(),
            trained_tiny_net(e, 28),
            "tiny".into(),
            FeatureLayers::Shallow,
            [1.0, 0.5, 0.25],
            3.0,
        )
    };
    for bad in [-1.0, f32::NAN] {
        assert!(matches!(
            build().with_pixel_term(bad),
            Err(Error::BadInput { .. })
        ));
    }
    let (w, beta) = (0.7f32, 3.0f32);
    let model = build().with_pixel_term(w).unwrap();
    assert!(
        model
            .describe()
            .contains(&("pixel".to_string(), "0.7".to_string()))
    );
    let mut t = Trainer::new(model, TrainConfig::adam(32, 1e-3, 5, "96 images"), 96).unwrap();
    let s = t.train_epoch(&train).unwrap();
    let (loss, perceptual, kl, pixel) = (
        s.steps_of("loss"),
        s.steps_of("perceptual"),
        s.steps_of("kl"),
        s.steps_of("pixel"),
    );
    assert_eq!(pixel.len(), 3, "one pixel term per step");
    for i in 0..3 {
        let want = perceptual[i] + beta * kl[i] + w * pixel[i];
        assert!(
            (loss[i] - want).abs() <= 1e-5 * want.abs(),
            "step {i}: loss {} against {want}",
            loss[i]
        );
        assert!(
            pixel[i] > 100.0 && pixel[i] < 2.0 * 784.0 * std::f32::consts::LN_2,
            "step {i}: pixel term {} nats",
            pixel[i]
        );
    }
    // Without a weight the paper's loss logs no pixel term.
    let mut t = Trainer::new(build(), TrainConfig::adam(32, 1e-3, 5, "96 images"), 96).unwrap();
    assert!(t.train_epoch(&train).unwrap().steps_of("pixel").is_empty());
}

fn mul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            for j in 0..n {
                out[i * n + j] += a[i * n + k] * b[k * n + j];
            }
        }
    }
    out
}

fn transpose(a: &[f64], n: usize) -> Vec<f64> {
    (0..n * n).map(|i| a[(i % n) * n + i / n]).collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// An orthogonal matrix by Gram–Schmidt on random rows.
fn random_orthogonal(n: usize, r: &mut StdRng) -> Vec<f64> {
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| r.random_range(-1.0..1.0)).collect();
        for u in &q {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-6 {
            q.push(v.iter().map(|a| a / norm).collect());
        }
    }
    q.concat()
}

/// Augmented training draws the same shifts and flips in every run of a seed, and they reach
/// the loss: the parameters differ from plain training's after one epoch.
#[test]
fn augmented_training_is_reproducible_and_changes_what_the_network_sees() {
    let e = gpu!();
    let data = random_split(48, 8, 5);
    let run = |augment: Augment| {
        let mut net = tiny_net(e, 8, 2);
        net.augment = augment;
        let mut t = Trainer::new(net, TrainConfig::adam(16, 1e-2, 1, "random"), 48).unwrap();
        let loss = t.train_epoch(&data).unwrap().term("loss");
        let params: Vec<Vec<f32>> = t
            .model
            .params()
            .iter()
            .map(|p| p.value().to_vec::<f32>().unwrap())
            .collect();
        (loss, params)
    };
    let on = Augment {
        max_shift: 2,
        flip: true,
    };
    let (a, b, plain) = (run(on), run(on), run(Augment::NONE));
    assert!(a.0.is_finite());
    assert_eq!(a, b, "the same seed augments the same way");
    assert_ne!(a.1, plain.1, "the augmentation reached the gradients");
}
