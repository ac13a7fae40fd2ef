//! VQ-VAE-2 stage by stage on a tiny synthetic dataset: the two-level model trains, its codes
//! feed a class-conditional top prior and a bottom prior conditioned on the top, hierarchical
//! samples decode, checkpoints carry each stage into the next. `cargo test --release --test vqvae2`.

mod common;

use common::{TempDir, rectangles};
use latent::models::pixelcnn::{Conditioning, PixelCnn, PixelCnnConfig};
use latent::models::prior::{self, CodeMaps, CondFn, Prior, PriorTraining};
use latent::models::vqvae::{VqModel, VqTraining};
use latent::models::vqvae2::{self, VqVae2, VqVae2Config};
use latent::nn::vq::VqConfig;
use latent::optim::Trainer;
use latent::{Result, Tensor};

/// Trains a prior through the one trainer, as the examples do, and returns the network.
fn train_prior(
    net: PixelCnn,
    grid: (usize, usize),
    maps: &CodeMaps,
    cond: Box<CondFn<'_>>,
    t: &PriorTraining,
) -> PixelCnn {
    let config = t.config(maps.len(), "codes");
    let mut trainer = Trainer::new(Prior::new(net, grid, cond), config, maps.len()).unwrap();
    for _ in 0..t.epochs {
        trainer.train_epoch(maps).unwrap();
    }
    trainer.model.net
}

fn tiny() -> VqVae2Config {
    let vq = VqConfig {
        codes: 16,
        dim: 8,
        reset_after: Some(10),
        ..Default::default()
    };
    VqVae2Config {
        hidden: 16,
        res_hidden: 8,
        top: vq,
        bottom: vq,
        ..Default::default()
    }
}

#[test]
fn vqvae2_stages_train_load_into_the_next_and_sample_hierarchically() {
    let Some(e) = common::engine() else { return };
    let train = rectangles(96, 4);
    let model = VqVae2::new(e, tiny(), 3).unwrap();
    let before = vqvae2::evaluate(&model, &train, 48).unwrap();
    let config = VqTraining::<VqVae2>::config(32, 2e-3, 3, "rectangles");
    let mut t = Trainer::new(VqTraining::new(model, &train), config, train.len()).unwrap();
    for _ in 0..4 {
        t.train_epoch(&train).unwrap();
    }
    assert_eq!(t.model.health().unwrap().len(), 2);
    let after = vqvae2::evaluate(&t.model.model, &train, 48).unwrap();
    eprintln!("{before:?} -> {after:?}");
    assert!(after.mse < 0.7 * before.mse, "{before:?} -> {after:?}");
    assert!(after.top_usage > 0.0 && after.bottom_usage > 0.0);

    // Stage 1 → 2: the saved model's codes.
    let dir = TempDir::new("vqvae2");
    let path = dir.0.join("vqvae2.safetensors");
    t.model.model.save(&path).unwrap();
    let model = VqVae2::load(e, tiny(), &path).unwrap();
    // The defaults' grids: 7×7 bottom codes, their halving rounded up to 4×4 top codes.
    assert_eq!(model.config.grids(), ((4, 4), (7, 7)));
    let (top, bottom) = vqvae2::extract_codes(&model, &train, 48).unwrap();
    assert_eq!((top.len(), bottom.len()), (96 * 16, 96 * 49));
    assert!(top.iter().chain(&bottom).all(|&c| c < 16));
    let labels = train.labels().to_vec();
    let top_maps = CodeMaps::new(top, labels.clone(), 4, 4).unwrap();
    let bottom_maps = CodeMaps::new(bottom, labels, 7, 7).unwrap();

    let small = PixelCnnConfig {
        codes: 16,
        channels: 8,
        blocks: 1,
        hidden: 16,
        ..Default::default()
    };
    let top_cfg = PixelCnnConfig {
        classes: 4,
        ..small
    };
    let bottom_cfg = PixelCnnConfig {
        spatial: Some((8, 1)),
        ..small
    };
    let top_prior = PixelCnn::new(e, top_cfg, 1).unwrap();
    let bottom_prior = PixelCnn::new(e, bottom_cfg, 2).unwrap();
    let by_class = |idx: &[usize]| -> Result<Conditioning> {
        Ok(Conditioning {
            labels: Some(top_maps.batch_labels(e, idx)?),
            map: None,
        })
    };
    let by_top = |idx: &[usize]| -> Result<Conditioning> {
        Ok(Conditioning {
            labels: None,
            map: Some(model.top_condition(&top_maps.batch(e, idx)?)?),
        })
    };
    let training = PriorTraining {
        epochs: 2,
        batch: 32,
        lr: 3e-3,
        seed: 1,
    };
    let b0 = prior::nll_bits(&top_prior, &top_maps, &by_class, 48).unwrap();
    let top_prior = train_prior(top_prior, (4, 4), &top_maps, Box::new(by_class), &training);
    let b1 = prior::nll_bits(&top_prior, &top_maps, &by_class, 48).unwrap();
    assert!(b1 < b0, "top prior NLL {b0} -> {b1}");
    let b0 = prior::nll_bits(&bottom_prior, &bottom_maps, &by_top, 48).unwrap();
    let bottom_prior = train_prior(
        bottom_prior,
        (7, 7),
        &bottom_maps,
        Box::new(by_top),
        &training,
    );
    let b1 = prior::nll_bits(&bottom_prior, &bottom_maps, &by_top, 48).unwrap();
    assert!(b1 < b0, "bottom prior NLL {b0} -> {b1}");
    let tp = dir.0.join("top.safetensors");
    prior::save_prior(&top_prior, (4, 4), &tp).unwrap();
    let wrong = PixelCnnConfig {
        codes: 32,
        ..top_cfg
    };
    let err = prior::load_prior(e, wrong, (4, 4), &tp)
        .err()
        .expect("K mismatch");
    assert!(err.to_string().contains("16 codes"), "{err}");
    let top_prior = prior::load_prior(e, top_cfg, (4, 4), &tp).unwrap();

    // Hierarchical sampling: top codes per class, then bottom codes given the top.
    let labels = Tensor::from_slice(e, &[0u32, 1, 2, 3], &[4]).unwrap();
    let c = Conditioning {
        labels: Some(labels),
        map: None,
    };
    let top_s = top_prior.sample(&c, 4, (4, 4), 9, 1.0).unwrap();
    let c = Conditioning {
        labels: None,
        map: Some(model.top_condition(&top_s).unwrap()),
    };
    let bottom_s = bottom_prior.sample(&c, 4, (7, 7), 10, 1.0).unwrap();
    assert!(bottom_s.to_vec::<u32>().unwrap().iter().all(|&k| k < 16));
    let images = model.decode_codes(&top_s, &bottom_s).unwrap();
    // Top-down: the bottom prior fills in the bottom codes of the sampled top maps.
    let from_top = model
        .decode_from_top(&top_s, &bottom_prior, 11, 1.0)
        .unwrap();
    assert_eq!(from_top.shape(), &[4, 1, 28, 28]);
    assert_eq!(images.shape(), &[4, 1, 28, 28]);
    let px = images.to_vec::<f32>().unwrap();
    assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
}
