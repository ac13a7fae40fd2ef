//! Helpers shared by the test harnesses: the GPU engine (or a deliberate skip) and scratch
//! folders. Used by `tests/*.rs` and `kernels-tests/main.rs` (`cargo test --release`).
// Each harness uses only some of these.
#![allow(dead_code)]

use latent::Engine;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The shared engine. A missing adapter fails the tests unless `LATENT_SKIP_GPU_TESTS` is set
/// on purpose (CI has lavapipe, so there a missing adapter is a real failure).
pub fn engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| match Engine::new() {
            Ok(e) => Some(e),
            Err(e) if std::env::var_os("LATENT_SKIP_GPU_TESTS").is_some() => {
                eprintln!("skipping GPU tests: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        })
        .as_ref()
}

/// Returns the shared engine or returns from the test when GPU tests are skipped on purpose.
#[macro_export]
macro_rules! gpu {
    () => {
        match $crate::common::engine() {
            Some(e) => e,
            None => return,
        }
    };
}

/// The shared engine and the first `n` Fashion-MNIST training images; `None` when GPU tests are
/// skipped, or the data is missing and `LATENT_SKIP_DATA_TESTS` is set on purpose.
pub fn fashion_train(n: usize) -> Option<(&'static Engine, latent::data::Split)> {
    let e = engine()?;
    let d = match latent::data::FashionMnist::load(None) {
        Ok(d) => d,
        Err(err) if std::env::var_os("LATENT_SKIP_DATA_TESTS").is_some() => {
            eprintln!("skipping: {err}");
            return None;
        }
        Err(err) => panic!("{err}"),
    };
    Some((e, d.train.take(n)))
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("latent-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` 28×28 images of one bright axis-aligned rectangle each on a dark background; the label
/// is the rectangle's quadrant-ish class (0-3), so the data has structure to learn.
pub fn rectangles(n: usize, seed: u64) -> latent::data::Split {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
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
    latent::data::Split::new(images, labels, 28, 28).unwrap()
}

/// A VQ-VAE small enough for tests: 16 channels, one residual block, 32 codes of 8 dimensions,
/// dead-code reset after 20 idle steps.
pub fn tiny_config() -> latent::models::vqvae::VqVaeConfig {
    latent::models::vqvae::VqVaeConfig {
        hidden: 16,
        res_hidden: 8,
        res_blocks: 1,
        vq: latent::nn::vq::VqConfig {
            codes: 32,
            dim: 8,
            reset_after: Some(20),
            ..Default::default()
        },
        ..Default::default()
    }
}
