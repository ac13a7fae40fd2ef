//! VQ-VAE on Fashion-MNIST, then a class-conditional gated PixelCNN prior over its 7×7 code
//! maps, sampled on the GPU and decoded; an in-repo classifier judges the samples. `--help`.

#[path = "common/shared.rs"]
mod shared;
#[path = "common/vq_run.rs"]
mod vq_run;

use clap::Parser;
use latent::data::{FashionMnist, Split};
use latent::models::pixelcnn::{Conditioning, PixelCnn, PixelCnnConfig};
use latent::models::prior::{self, CodeMaps, Prior, PriorTraining};
use latent::models::vqvae::{self, VqVae, VqVaeConfig};
use latent::nn::vq::{Ema, VqConfig};
use latent::{Engine, Result, Tensor};
use std::path::{Path, PathBuf};
use vq_run::write_metrics;

/// Train a VQ-VAE on Fashion-MNIST, then a class-conditional PixelCNN prior over its codes;
/// write reconstructions, one row of prior samples per class, and metrics.json (test MSE,
/// codebook usage and perplexity, prior NLL in bits per code, classifier-judged sample accuracy).
#[derive(Parser, Debug)]
struct Args {
    /// VQ-VAE training epochs (469 steps each at batch 128).
    #[arg(long, default_value_t = 3)]
    epochs: u64,
    /// Prior training epochs over the training set's code maps.
    #[arg(long, default_value_t = 4)]
    prior_epochs: u64,
    /// Images (or code maps) per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam learning rate of the VQ-VAE.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Adam learning rate of the prior.
    #[arg(long, default_value_t = 1e-3)]
    prior_lr: f64,
    /// Codebook size K.
    #[arg(long, default_value_t = 512)]
    codes: usize,
    /// Code dimension D.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Channels inside the encoder and decoder.
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Commitment weight β.
    #[arg(long, default_value_t = 0.25)]
    beta: f32,
    /// Train the codebook by its loss ‖sg[z_e] − e‖² instead of EMA updates (decay 0.99, the
    /// default: measured to reconstruct better and use more codes in a short run).
    #[arg(long)]
    codebook_loss: bool,
    /// Steps a code may go unused before it is re-initialised from an encoder output.
    #[arg(long, default_value_t = 100)]
    reset_after: u32,
    /// Turn dead-code resets off (to see the codebook collapse they prevent).
    #[arg(long)]
    no_reset: bool,
    /// Channels of the prior's gated blocks.
    #[arg(long, default_value_t = 32)]
    prior_channels: usize,
    /// Gated blocks of the prior after the first (mask A) one.
    #[arg(long, default_value_t = 4)]
    prior_blocks: usize,
    /// Prior samples per class in the judged set (the grid shows 10 per class).
    #[arg(long, default_value_t = 50)]
    samples_per_class: usize,
    /// Softmax temperature of prior sampling.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Epochs of the judge (an MLP classifier trained on the real training images).
    #[arg(long, default_value_t = 3)]
    judge_epochs: u64,
    /// Stop after the VQ-VAE stage (reconstructions and its metrics only).
    #[arg(long)]
    skip_prior: bool,
    /// Use this trained VQ-VAE (a `vqvae.safetensors`) instead of training one.
    #[arg(long)]
    vqvae: Option<PathBuf>,
    /// Use this trained prior (a `prior.safetensors`) instead of training one.
    #[arg(long)]
    prior: Option<PathBuf>,
    #[command(flatten)]
    common: vq_run::Common,
}

fn vq_config(a: &Args) -> VqVaeConfig {
    VqVaeConfig {
        hidden: a.hidden,
        res_hidden: a.hidden / 2,
        vq: VqConfig {
            codes: a.codes,
            dim: a.dim,
            beta: a.beta,
            ema: (!a.codebook_loss).then(Ema::default),
            reset_after: (!a.no_reset).then_some(a.reset_after),
            seed: a.common.seed,
        },
        ..Default::default()
    }
}

fn prior_config(a: &Args) -> PixelCnnConfig {
    PixelCnnConfig {
        codes: a.codes,
        channels: a.prior_channels,
        blocks: a.prior_blocks,
        classes: 10,
        ..Default::default()
    }
}

/// The trained model and its last epoch's codebook usage on the training set.
fn train_vqvae(engine: &Engine, a: &Args, train: &Split, out: &Path) -> Result<(VqVae, f64)> {
    let model = VqVae::new(engine, vq_config(a), a.common.seed)?;
    let run = (a.batch, a.lr as f64, a.common.seed);
    let mut t = vq_run::vq_trainer(model, "vqvae", train, run, out)?;
    let mut usage = f64::NAN;
    while t.epoch < a.epochs {
        let s = t.train_epoch(train)?;
        let health = t.model.health()?.remove(0);
        println!(
            "vqvae epoch {}: loss {:.4}  mse {:.5}  codebook {:.4}  commitment {:.4}  usage {:.1}% ({} unused)  perplexity {:.1}  {:.0} img/s",
            s.epoch,
            s.term("loss"),
            s.term("mse"),
            s.term("codebook"),
            s.term("commitment"),
            100.0 * health.usage,
            health.unused,
            health.perplexity,
            s.images_per_second
        );
        usage = health.usage;
    }
    Ok((t.model.model, usage))
}

fn run(a: Args) -> Result<()> {
    let out = a.common.out_dir("vqvae")?;
    let engine = Engine::new()?;
    eprintln!("adapter: {}", engine.summary());
    let data = FashionMnist::load(a.common.data.as_deref())?;
    // The model and the prior train on `train`; the judge always on all training images.
    let train = match a.common.train_images {
        0 => data.train.clone(),
        n => data.train.take(n),
    };

    // Stage 1: the VQ-VAE.
    let (model, train_usage) = match &a.vqvae {
        Some(path) => (VqVae::load(&engine, vq_config(&a), path)?, f64::NAN),
        None => train_vqvae(&engine, &a, &train, &out)?,
    };
    // JSON has no NaN: a loaded model has no training epoch to report.
    let train_usage = match train_usage.is_nan() {
        true => "null".to_string(),
        false => format!("{train_usage:.4}"),
    };
    let test = vqvae::evaluate(&model, &data.test, 500)?;
    println!(
        "test: reconstruction mse {:.5}, codebook usage {:.1}% of {}, perplexity {:.1}",
        test.mse,
        100.0 * test.usage,
        a.codes,
        test.perplexity
    );
    let x = Tensor::from_slice(&engine, &data.test.images()[..50 * 784], &[50, 784])?;
    let recon = model.reconstruct(&x)?.to_vec::<f32>()?;
    let mut pairs = data.test.images()[..50 * 784].to_vec();
    pairs.extend(recon);
    latent::io::save_grid(out.join("reconstructions.png"), &pairs, 10, 28, 28, 1)?;

    if a.skip_prior {
        let json = format!(
            "{{\"train_codebook_usage_last_epoch\":{train_usage},\"test_mse\":{:.6},\"test_codebook_usage\":{:.4},\"test_perplexity\":{:.2},\"codes\":{},\"dead_code_reset\":{}}}\n",
            test.mse, test.usage, test.perplexity, a.codes, !a.no_reset
        );
        return write_metrics(&out, &json);
    }

    // Stage 2: the class-conditional prior over the code maps the trained VQ-VAE extracts.
    let (h, w) = model.config.latent_size();
    let codes = |s: &Split| -> Result<CodeMaps> {
        let c = vqvae::extract_codes(&model, s, 500)?;
        CodeMaps::new(c, s.labels().to_vec(), h, w)
    };
    let (train_codes, test_codes) = (codes(&train)?, codes(&data.test)?);
    let labels_of = |maps: &CodeMaps| {
        let maps = maps.clone();
        let engine = engine.clone();
        move |idx: &[usize]| -> Result<Conditioning> {
            Ok(Conditioning {
                labels: Some(maps.batch_labels(&engine, idx)?),
                map: None,
            })
        }
    };
    let pc = prior_config(&a);
    let prior_net = match &a.prior {
        Some(path) => prior::load_prior(&engine, pc, (h, w), path)?,
        None => {
            let net = PixelCnn::new(&engine, pc, a.common.seed.wrapping_add(7))?;
            let t = PriorTraining {
                epochs: a.prior_epochs,
                batch: a.batch,
                lr: a.prior_lr,
                seed: a.common.seed,
            };
            let task = Prior::new(net, (h, w), Box::new(labels_of(&train_codes)));
            let path = out.join("prior.safetensors");
            vq_run::train_prior("prior", task, &train_codes, &t, &path)?
        }
    };
    let test_bits = prior::nll_bits(&prior_net, &test_codes, &labels_of(&test_codes), 500)?;
    println!("test prior nll: {test_bits:.3} bits/code");

    // Samples: n per class, drawn position by position on the GPU, decoded, judged.
    let n = a.samples_per_class.max(10);
    let labels = vq_run::class_labels(n);
    let cond = Conditioning {
        labels: Some(Tensor::from_slice(&engine, &labels, &[labels.len()])?),
        map: None,
    };
    let since = std::time::Instant::now();
    let sampled = prior_net.sample(&cond, labels.len(), (h, w), a.common.seed, a.temperature)?;
    let images = model.decode_codes(&sampled)?;
    eprintln!(
        "sampled {} code maps in {:.1} s",
        labels.len(),
        since.elapsed().as_secs_f64()
    );
    vq_run::save_class_rows(
        &out.join("samples_by_class.png"),
        &images.to_vec::<f32>()?,
        n,
    )?;
    let judged = vq_run::judge(&engine, &data, &images, n, a.judge_epochs, a.common.seed)?;
    let json = format!(
        "{{\"train_codebook_usage_last_epoch\":{train_usage},\"test_mse\":{:.6},\"test_codebook_usage\":{:.4},\"test_perplexity\":{:.2},\"codes\":{},\"dead_code_reset\":{},\"prior_test_nll_bits_per_code\":{test_bits:.4},\"judge_test_accuracy\":{:.4},\"sample_accuracy\":{:.4},\"sample_accuracy_per_class\":{:?},\"samples\":{}}}\n",
        test.mse,
        test.usage,
        test.perplexity,
        a.codes,
        !a.no_reset,
        judged.judge_accuracy,
        judged.accuracy,
        judged.per_class,
        labels.len()
    );
    write_metrics(&out, &json)
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
