//! The VQ-VAE on a tiny synthetic dataset: training lowers the reconstruction error and uses
//! the codebook, code maps round-trip through checkpoints, mismatched checkpoints are refused,
//! decoding continuous latents is the reconstruction.
//! `cargo test --release --test vqvae`.

mod common;

use common::{TempDir, rectangles, tiny_config};
use latent::data::Split;
use latent::models::vqvae::{self, VqModel, VqTraining, VqVae};
use latent::nn::Module;
use latent::optim::{TrainConfig, Trainer};
use latent::{Engine, Tensor};
use std::path::Path;

fn engine() -> Option<&'static Engine> {
    common::engine()
}

/// A VQ-VAE training run at batch 32, Adam lr 2e-3, data order from `seed`.
fn vq_trainer(
    model: VqVae,
    train: &Split,
    seed: u64,
    checkpoint: Option<&Path>,
) -> Trainer<VqTraining<VqVae>> {
    let config = TrainConfig {
        checkpoint: checkpoint.map(Path::to_path_buf),
        ..VqTraining::<VqVae>::config(32, 2e-3, seed, "rectangles")
    };
    let n = train.len();
    Trainer::new(VqTraining::new(model, train), config, n).unwrap()
}

#[test]
fn vqvae_training_lowers_reconstruction_error_and_uses_the_codebook() {
    let Some(e) = engine() else { return };
    let train = rectangles(256, 1);
    let model = VqVae::new(e, tiny_config(), 5).unwrap();
    let before = vqvae::evaluate(&model, &train, 64).unwrap();
    let mut t = vq_trainer(model, &train, 5, None);
    let mut last = None;
    for _ in 0..6 {
        last = Some(t.train_epoch(&train).unwrap());
    }
    let stats = last.unwrap();
    let health = t.model.health().unwrap().remove(0);
    let after = vqvae::evaluate(&t.model.model, &train, 64).unwrap();
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
    assert!(health.usage >= 0.5, "usage {}", health.usage);
    assert!(health.perplexity > 4.0, "perplexity {}", health.perplexity);
    let codes = t
        .model
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
    let dir = TempDir::new("vqvae-ck");
    let ck = dir.0.join("trainer.safetensors");
    let mut t = vq_trainer(
        VqVae::new(e, tiny_config(), 6).unwrap(),
        &train,
        6,
        Some(&ck),
    );
    t.train_epoch(&train).unwrap();
    let path = dir.0.join("model.safetensors");
    t.model.model.save(&path).unwrap();
    let x = Tensor::from_slice(e, &train.images()[..4 * 784], &[4, 784]).unwrap();
    let want = t
        .model
        .model
        .reconstruct(&x)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let codes = t
        .model
        .model
        .encode_codes(&x)
        .unwrap()
        .to_vec::<u32>()
        .unwrap();
    let loaded = VqVae::load(e, tiny_config(), &path).unwrap();
    assert_eq!(
        loaded.encode_codes(&x).unwrap().to_vec::<u32>().unwrap(),
        codes
    );
    assert_eq!(
        loaded.reconstruct(&x).unwrap().to_vec::<f32>().unwrap(),
        want
    );
    // The trainer's checkpoint loads as a model too (its optimizer state left unread).
    let from_trainer = VqVae::load(e, tiny_config(), &ck).unwrap();
    assert_eq!(
        from_trainer
            .encode_codes(&x)
            .unwrap()
            .to_vec::<u32>()
            .unwrap(),
        codes
    );
    let mut other = tiny_config();
    other.vq.codes = 64;
    let err = VqVae::load(e, other, &path)
        .err()
        .expect("a K mismatch is refused");
    assert!(err.to_string().contains("codes"), "{err}");

    // With codes reset after one idle step, every step draws reset rows from the quantiser's
    // random stream: resumed after one epoch, the second epoch ends where the uninterrupted
    // run's does, bit for bit (the stream's position is a counter saved in the checkpoint).
    let mut eager = tiny_config();
    eager.vq.reset_after = Some(1);
    let ck = dir.0.join("eager.safetensors");
    let mut straight = vq_trainer(VqVae::new(e, eager, 6).unwrap(), &train, 6, None);
    let mut first = vq_trainer(VqVae::new(e, eager, 6).unwrap(), &train, 6, Some(&ck));
    straight.train_epoch(&train).unwrap();
    first.train_epoch(&train).unwrap();
    drop(first);
    let model = VqVae::new(e, eager, 6).unwrap();
    let config = VqTraining::<VqVae>::config(32, 2e-3, 6, "rectangles");
    let mut r = Trainer::resume(VqTraining::new(model, &train), config, 64, &ck).unwrap();
    assert_eq!(r.step, straight.step);
    straight.train_epoch(&train).unwrap();
    r.train_epoch(&train).unwrap();
    let (a, b) = (dir.0.join("a.safetensors"), dir.0.join("b.safetensors"));
    straight.save(&a).unwrap();
    r.save(&b).unwrap();
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "resume differs"
    );
}

/// Stage 1 → stage 2: a saved VQ-VAE is loaded, its extracted codes train a class-conditional
/// prior (the NLL drops), the prior round-trips through its checkpoint, samples decode to
/// images, and a prior saved for another codebook size is refused naming both sizes.
#[test]
fn vqvae_codes_feed_a_prior_whose_checkpoint_checks_the_codebook_size() {
    use latent::models::pixelcnn::{Conditioning, PixelCnn, PixelCnnConfig};
    use latent::models::prior::{self, CodeMaps, Prior, PriorTraining};
    let Some(e) = engine() else { return };
    let train = rectangles(128, 3);
    let mut t = vq_trainer(VqVae::new(e, tiny_config(), 7).unwrap(), &train, 7, None);
    t.train_epoch(&train).unwrap();
    let dir = TempDir::new("vqvae-prior");
    let vq_path = dir.0.join("vqvae.safetensors");
    t.model.model.save(&vq_path).unwrap();
    let model = VqVae::load(e, tiny_config(), &vq_path).unwrap();
    let codes = vqvae::extract_codes(&model, &train, 64).unwrap();
    let maps = CodeMaps::new(codes, train.labels().to_vec(), 7, 7).unwrap();
    let config = PixelCnnConfig {
        codes: 32,
        channels: 16,
        blocks: 1,
        hidden: 32,
        classes: 4,
        ..Default::default()
    };
    let net = PixelCnn::new(e, config, 1).unwrap();
    let cond = |idx: &[usize]| -> latent::Result<Conditioning> {
        Ok(Conditioning {
            labels: Some(maps.batch_labels(e, idx)?),
            map: None,
        })
    };
    let before = prior::nll_bits(&net, &maps, &cond, 64).unwrap();
    let training = PriorTraining {
        epochs: 3,
        batch: 32,
        lr: 3e-3,
        seed: 1,
    };
    // The prior trains through the same trainer as the VQ-VAE.
    let task = Prior::new(net, (7, 7), Box::new(cond));
    let mut pt = Trainer::new(task, training.config(maps.len(), "codes"), maps.len()).unwrap();
    for _ in 0..training.epochs {
        pt.train_epoch(&maps).unwrap();
    }
    let net = pt.model.net;
    let after = prior::nll_bits(&net, &maps, &cond, 64).unwrap();
    assert!(
        after < before - 0.5,
        "prior NLL {before} -> {after} bits/code"
    );
    let path = dir.0.join("prior.safetensors");
    prior::save_prior(&net, (7, 7), &path).unwrap();
    let loaded = prior::load_prior(e, config, (7, 7), &path).unwrap();
    let reloaded = prior::nll_bits(&loaded, &maps, &cond, 64).unwrap();
    assert!((reloaded - after).abs() < 1e-4, "{reloaded} vs {after}");
    let labels = Tensor::from_slice(e, &[0u32, 1, 2, 3], &[4]).unwrap();
    let c = Conditioning {
        labels: Some(labels),
        map: None,
    };
    let sampled = loaded.sample(&c, 4, (7, 7), 5, 1.0).unwrap();
    assert!(sampled.to_vec::<u32>().unwrap().iter().all(|&k| k < 32));
    assert_eq!(
        model.decode_codes(&sampled).unwrap().shape(),
        &[4, 1, 28, 28]
    );
    let other = PixelCnnConfig {
        codes: 64,
        ..config
    };
    let err = prior::load_prior(e, other, (7, 7), &path)
        .err()
        .expect("K mismatch");
    let msg = err.to_string();
    assert!(
        msg.contains("32 codes") && msg.contains("64 codes"),
        "{msg}"
    );
}

/// The continuous path the latent explorer drives: decoding the encoder's outputs z_e (nearest
/// codes, then the decoder) is the reconstruction, and leaves the codebook and its usage counts
/// as they were even when the model is in training mode.
#[test]
fn decoding_encoder_outputs_is_the_reconstruction_and_updates_nothing() {
    let Some(e) = engine() else { return };
    let train = rectangles(64, 2);
    let mut t = vq_trainer(VqVae::new(e, tiny_config(), 6).unwrap(), &train, 6, None);
    t.train_epoch(&train).unwrap();
    let model = &t.model.model;
    let x = Tensor::from_slice(e, &train.images()[..5 * 784], &[5, 784]).unwrap();
    let z = model.encode_continuous(&x).unwrap();
    assert_eq!(z.shape(), [5, 8, 7, 7]);
    let codebook = model.quantizer.codebook.value().to_vec::<f32>().unwrap();
    let counts = model.quantizer.epoch_stats().unwrap().counts;
    model.set_training(true);
    let live = model
        .decode_continuous(&z)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let batch = model.reconstruct(&x).unwrap().to_vec::<f32>().unwrap();
    // The same codes and the same decoder kernels: equal up to summation order.
    let worst = (live.iter().zip(&batch)).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst < 1e-5,
        "decode_continuous differs from reconstruct by {worst}"
    );
    assert!(model.quantizer.is_training(), "the mode is restored");
    let after = model.quantizer.codebook.value().to_vec::<f32>().unwrap();
    assert_eq!(codebook, after, "decoding moved the codebook");
    let counted = model.quantizer.epoch_stats().unwrap().counts;
    assert_eq!(counts, counted, "decoding counted code uses as training");
    let bad = Tensor::zeros(e, &[5, 7, 7, 7], latent::DType::F32).unwrap();
    assert!(
        model.decode_continuous(&bad).is_err(),
        "a wrong code dimension is refused"
    );
}
