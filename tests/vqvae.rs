//! The VQ-VAE on a tiny synthetic dataset: training lowers the reconstruction error and uses
//! the codebook, code maps round-trip through checkpoints, mismatched checkpoints are refused.
//! `cargo test --release --test vqvae`.

mod common;

use common::TempDir;
use latent::data::Split;
use latent::models::vqvae::{self, VqTrainer, VqVae, VqVaeConfig};
use latent::nn::vq::VqConfig;
use latent::{Engine, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` 28×28 images of one bright axis-aligned rectangle each on a dark background; the label
/// is the rectangle's quadrant-ish class (0-3), so the data has structure to learn.
pub fn rectangles(n: usize, seed: u64) -> Split {
    let mut r = StdRng::seed_from_u64(seed);
    let mut images = vec![0.0f32; n * 784];
    let mut labels = Vec::new();
    for i in 0..n {
        let (y0, x0) = (r.random_range(0..20), r.random_range(0..20));
        let (h, w) = (r.random_range(4..9), r.random_range(4..9));
        let v = r.random_range(0.6..1.0);
        for y in y0..(y0 + h).min(28) {
            for x in x0..(x0 + w).min(28) {
                images[i * 784 + y * 28 + x] = v;
            }
        }
        labels.push((2 * (y0 / 10) + x0 / 10).min(3) as u8);
    }
    Split::new(images, labels, 28, 28).unwrap()
}

pub fn tiny_config() -> VqVaeConfig {
    VqVaeConfig {
        hidden: 16,
        res_hidden: 8,
        res_blocks: 1,
        vq: VqConfig {
            codes: 32,
            dim: 8,
            reset_after: Some(20),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn engine() -> Option<&'static Engine> {
    common::engine()
}

#[test]
fn vqvae_training_lowers_reconstruction_error_and_uses_the_codebook() {
    let Some(e) = engine() else { return };
    let train = rectangles(256, 1);
    let model = VqVae::new(e, tiny_config(), 5).unwrap();
    let before = vqvae::evaluate(&model, &train, 64).unwrap();
    let mut t = VqTrainer::new(model, &train, 32, 2e-3, 5).unwrap();
    let mut last = None;
    for _ in 0..6 {
        last = Some(t.train_epoch(&train, &mut |_, _| {}).unwrap());
    }
    let stats = last.unwrap();
    let after = vqvae::evaluate(&t.model, &train, 64).unwrap();
    eprintln!(
        "mse {:.4} -> {:.4}; {stats:?}; eval {after:?}",
        before.mse, after.mse
    );
    assert!(
        after.mse < 0.5 * before.mse,
        "MSE {} -> {}",
        before.mse,
        after.mse
    );
    // 256 images × 49 positions over 32 codes, with dead-code resets: most codes in use.
    assert!(stats.usage >= 0.5, "usage {}", stats.usage);
    assert!(stats.perplexity > 4.0, "perplexity {}", stats.perplexity);
    let codes = t
        .model
        .encode_codes(&Tensor::from_slice(e, &train.images()[..3 * 784], &[3, 784]).unwrap())
        .unwrap();
    assert_eq!(codes.shape(), &[3, 7, 7]);
    assert!(codes.to_vec::<u32>().unwrap().iter().all(|&c| c < 32));
}

#[test]
fn vqvae_checkpoints_round_trip_and_refuse_other_architectures() {
    let Some(e) = engine() else { return };
    let train = rectangles(64, 2);
    let mut t = VqTrainer::new(
        VqVae::new(e, tiny_config(), 6).unwrap(),
        &train,
        32,
        2e-3,
        6,
    )
    .unwrap();
    t.train_epoch(&train, &mut |_, _| {}).unwrap();
    let dir = TempDir::new("vqvae-ck");
    let path = dir.0.join("model.safetensors");
    t.model.save(&path).unwrap();
    let x = Tensor::from_slice(e, &train.images()[..4 * 784], &[4, 784]).unwrap();
    let want = t.model.reconstruct(&x).unwrap().to_vec::<f32>().unwrap();
    let codes = t.model.encode_codes(&x).unwrap().to_vec::<u32>().unwrap();
    let loaded = VqVae::load(e, tiny_config(), &path).unwrap();
    assert_eq!(
        loaded.encode_codes(&x).unwrap().to_vec::<u32>().unwrap(),
        codes
    );
    assert_eq!(
        loaded.reconstruct(&x).unwrap().to_vec::<f32>().unwrap(),
        want
    );
    let mut other = tiny_config();
    other.vq.codes = 64;
    let err = VqVae::load(e, other, &path)
        .err()
        .expect("a K mismatch is refused");
    assert!(err.to_string().contains("codes"), "{err}");
    // A trainer checkpoint resumes at its step.
    let ck = dir.0.join("trainer.safetensors");
    t.save(&ck).unwrap();
    let model = VqVae::new(e, tiny_config(), 6).unwrap();
    let r = VqTrainer::resume(model, &train, 32, 2e-3, 6, &ck).unwrap();
    assert_eq!(r.step(), t.step());
    assert_eq!(
        r.model.encode_codes(&x).unwrap().to_vec::<u32>().unwrap(),
        codes
    );
}
