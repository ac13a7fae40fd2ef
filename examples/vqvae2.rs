//! VQ-VAE-2 on Fashion-MNIST (Razavi et al. 2019): the two-level model (Algorithm 1), a
//! class-conditional top prior and a bottom prior conditioned on the top (Algorithm 2). `--help`.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;
#[path = "common/vq_run.rs"]
mod vq_run;

use clap::Parser;
use latent::data::{DeviceSplit, FashionMnist, Split};
use latent::models::pixelcnn::{Conditioning, PixelCnn, PixelCnnConfig};
use latent::models::prior::{self, CodeMaps, Prior, PriorTraining};
use latent::models::vqvae2::{self, VqVae2, VqVae2Config};
use latent::nn::vq::{Ema, VqConfig};
use latent::{Engine, Result, Tensor};
use std::path::PathBuf;
use std::time::Instant;

/// Trains VQ-VAE-2 on Fashion-MNIST (top codes 4×4, bottom codes 7×7), a class-conditional
/// PixelCNN over its top codes and one over its bottom codes given the top, and writes to --out
/// the checkpoints, reconstructions.png (labelled rows: original / from the top codes / from both
/// levels), samples_by_class.png (one labelled row per class) and metrics.json.
#[derive(Parser, Debug)]
struct Args {
    /// VQ-VAE-2 training epochs, each one pass over the training images (469 steps at batch
    /// 128).
    #[arg(long, default_value_t = 2)]
    epochs: u64,
    /// Epochs of the class-conditional top prior, each one pass over the top code maps of the
    /// prior training images. The top codes decide the class of a sample, and their 4×4 prior
    /// is cheap (~850 maps/s, 70 s an epoch on a 2-core machine): its training NLL fell from
    /// 4.32 bits per code after 2 epochs to 3.77 after 8, and the share of samples judged as
    /// their class from 57.6 % to 62.7 % (at temperature 1).
    #[arg(long, default_value_t = 8)]
    top_prior_epochs: u64,
    /// Epochs of the bottom prior, each one pass over the bottom code maps of the prior training
    /// images (~200 maps/s on a loaded 2-core machine).
    #[arg(long, default_value_t = 2)]
    bottom_prior_epochs: u64,
    /// Training images whose codes train the priors (0: all 60,000). All of them fit the
    /// 30 minutes at the default 7×7 bottom codes, whose prior trains at ~300 maps/s.
    #[arg(long, default_value_t = 0)]
    prior_images: usize,
    /// Images (or code maps) per training step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam learning rate of the VQ-VAE-2 (step size per update).
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Adam learning rate of the priors (step size per update).
    #[arg(long, default_value_t = 1e-3)]
    prior_lr: f64,
    /// Codebook size K of the top level (codes): the top codes carry the shape and class.
    #[arg(long, default_value_t = 256)]
    top_codes: usize,
    /// Codebook size K of the bottom level (codes): a small one leaves the bottom prior little
    /// to get wrong.
    #[arg(long, default_value_t = 16)]
    bottom_codes: usize,
    /// Stride-2 stages from the image to the bottom codes: 2 gives 7×7 bottom and 4×4 top
    /// codes, 1 gives 14×14 and 7×7 (stages; 1 or 2).
    #[arg(long, default_value_t = 2)]
    bottom_stages: usize,
    /// Code dimension D of both levels (floats per code).
    #[arg(long, default_value_t = 32)]
    dim: usize,
    /// Channels inside the encoders and decoders (at least 2: the residual blocks use half).
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Training steps a code may go unused before it is re-initialised from an encoder output.
    #[arg(long, default_value_t = 100)]
    reset_after: u32,
    /// Channels of the priors' gated blocks.
    #[arg(long, default_value_t = 32)]
    prior_channels: usize,
    /// Gated blocks of each prior after the first (mask A) one.
    #[arg(long, default_value_t = 3)]
    prior_blocks: usize,
    /// Width of the priors' layer before the logits (channels).
    #[arg(long, default_value_t = 128)]
    prior_hidden: usize,
    /// Samples per class in each sampling round (at least 10: the grid shows the first
    /// round's 10 per class; a round of 1,000 samples takes about 15 s to draw on lavapipe).
    #[arg(long, default_value_t = 100)]
    samples_per_class: usize,
    /// Class-conditional samples drawn in all, in rounds of 10 × --samples-per-class (whole
    /// rounds, rounding up), for the judged share and the Fréchet score (FID computed with the
    /// feature network of --judge instead of Inception).
    #[arg(long, default_value_t = latent::models::fid::FID_IMAGES)]
    fid_samples: usize,
    /// Softmax temperature of the top prior's sampling (1: the prior itself; lower is greedier
    /// and keeps samples nearer their class's typical top codes). The bottom prior samples at
    /// one. Measured on one trained model (top prior 8 epochs, 2,000 samples, judge 91.5 %):
    /// at τ = 1, 62.7 % judged as their class and a Fréchet score of 263; at 0.8, 68.1 % and
    /// 247; at 0.6, 72.7 % and 265.
    #[arg(long, default_value_t = 0.6)]
    temperature: f32,
    /// Use this trained VQ-VAE-2 (a `vqvae2.safetensors` of the same flags) instead of training
    /// one [default: train one].
    #[arg(long)]
    vqvae2: Option<PathBuf>,
    /// Use this trained top prior (a `top_prior.safetensors`) instead of training one
    /// [default: train one].
    #[arg(long)]
    top_prior: Option<PathBuf>,
    /// Use this trained bottom prior (a `bottom_prior.safetensors`) instead of training one
    /// [default: train one].
    #[arg(long)]
    bottom_prior: Option<PathBuf>,
    #[command(flatten)]
    common: vq_run::Common,
}

impl Args {
    /// Every flag checked before the device is opened or anything trains.
    fn validate(&self) -> Result<()> {
        self.common.validate(self.batch)?;
        flags::images("--prior-images", self.prior_images, self.batch)?;
        flags::positive("--lr", self.lr as f64)?;
        flags::positive("--prior-lr", self.prior_lr)?;
        flags::at_least("--top-codes", self.top_codes, 2)?;
        flags::at_least("--bottom-codes", self.bottom_codes, 2)?;
        flags::between("--bottom-stages", self.bottom_stages, 1, 2)?;
        flags::at_least("--dim", self.dim, 1)?;
        flags::at_least("--hidden", self.hidden, 2)?;
        flags::at_least("--reset-after", self.reset_after as usize, 1)?;
        flags::at_least("--prior-channels", self.prior_channels, 1)?;
        flags::at_least("--prior-hidden", self.prior_hidden, 1)?;
        flags::at_least("--samples-per-class", self.samples_per_class, 10)?;
        flags::at_least("--fid-samples", self.fid_samples, 2)?;
        flags::positive("--temperature", self.temperature as f64)?;
        flags::existing_file("--vqvae2", self.vqvae2.as_deref())?;
        flags::existing_file("--top-prior", self.top_prior.as_deref())?;
        flags::existing_file("--bottom-prior", self.bottom_prior.as_deref())
    }
}

fn config(a: &Args) -> VqVae2Config {
    let vq = VqConfig {
        codes: a.top_codes,
        dim: a.dim,
        ema: Some(Ema::default()),
        reset_after: Some(a.reset_after),
        ..Default::default()
    };
    VqVae2Config {
        hidden: a.hidden,
        res_hidden: a.hidden / 2,
        bottom_stages: a.bottom_stages,
        top: vq,
        bottom: VqConfig {
            codes: a.bottom_codes,
            ..vq
        },
        ..Default::default()
    }
}

/// A prior over `codes` codes, class-conditional with `classes` > 0, conditioned on a map of
/// (channels, kernel) with `spatial`.
fn prior_config(
    a: &Args,
    codes: usize,
    classes: usize,
    spatial: Option<(usize, usize)>,
) -> PixelCnnConfig {
    PixelCnnConfig {
        codes,
        channels: a.prior_channels,
        blocks: a.prior_blocks,
        hidden: a.prior_hidden,
        classes,
        spatial,
        ..Default::default()
    }
}

fn train_model(
    engine: &Engine,
    a: &Args,
    (data, train): (&FashionMnist, &Split),
    out: &std::path::Path,
) -> Result<VqVae2> {
    let model = VqVae2::new(engine, config(a), a.common.run.seed)?;
    let run = (a.batch, a.lr as f64, a.common.run.seed);
    let mut t = vq_run::vq_trainer(
        model,
        "vqvae2",
        (data, train),
        run,
        out,
        a.common.run.resume,
    )?;
    let mut curves = shared::Curves::default();
    // The training images on the device: each step gathers its batch there, uploading nothing.
    let on_device = DeviceSplit::new(engine, train)?;
    while t.epoch < a.epochs {
        let s = t.train_epoch(&on_device)?;
        curves.push(&s);
        let levels = t.model.health()?;
        let (top, bottom) = (&levels[0], &levels[1]);
        println!(
            "vqvae2 epoch {}: loss {:.4}  mse {:.5}  usage top {:.1}% bottom {:.1}%  perplexity top {:.1} bottom {:.1}  {:.0} img/s",
            s.epoch,
            s.term("loss"),
            s.term("mse"),
            100.0 * top.usage,
            100.0 * bottom.usage,
            top.perplexity,
            bottom.perplexity,
            s.images_per_second
        );
    }
    let title = "VQ-VAE-2: training losses per step (batch means)";
    let unit = "loss (MSE / data variance + VQ terms); MSE per pixel";
    curves.write(out, "vqvae2_loss_curve", title, unit)?;
    Ok(t.model.model)
}

fn run(a: Args) -> Result<()> {
    let start = Instant::now();
    let out = a.common.out_dir("vqvae2")?;
    let engine = Engine::new()?;
    eprintln!("adapter: {}", engine.summary());
    // Checkpoints named by flags are loaded (shapes and metadata checked) before anything trains.
    let ((th, tw), (bh, bw)) = config(&a).grids();
    let loaded_model = (a.vqvae2.as_deref())
        .map(|path| VqVae2::load(&engine, config(&a), path))
        .transpose()?;
    let loaded_top = (a.top_prior.as_deref())
        .map(|path| {
            prior::load_prior(
                &engine,
                prior_config(&a, a.top_codes, 10, None),
                (th, tw),
                path,
            )
        })
        .transpose()?;
    let bottom_cfg = prior_config(&a, a.bottom_codes, 0, Some((a.dim, 1)));
    let loaded_bottom = (a.bottom_prior.as_deref())
        .map(|path| prior::load_prior(&engine, bottom_cfg, (bh, bw), path))
        .transpose()?;
    let data = FashionMnist::load(a.common.run.data.as_deref())?;
    let train = match a.common.train_images {
        0 => data.train.clone(),
        n => data.train.take(n),
    };

    // Stage 1 (Algorithm 1): both levels at once.
    let model = match loaded_model {
        Some(model) => model,
        None => train_model(&engine, &a, (&data, &train), &out)?,
    };
    let test = vqvae2::evaluate(&model, &data.test, 200)?;
    println!(
        "test: mse {:.5}; codes in use: top {:.1}%, bottom {:.1}%",
        test.mse,
        100.0 * test.top_usage,
        100.0 * test.bottom_usage
    );

    // Stage 2 (Algorithm 2): the priors, on the codes the trained model extracts.
    let prior_split = match a.prior_images {
        0 => data.train.clone(),
        n => data.train.take(n),
    };
    let maps = |s: &Split| -> Result<(CodeMaps, CodeMaps)> {
        let (top, bottom) = vqvae2::extract_codes(&model, s, 200)?;
        let labels = s.labels().to_vec();
        Ok((
            CodeMaps::new(top, labels.clone(), th, tw)?,
            CodeMaps::new(bottom, labels, bh, bw)?,
        ))
    };
    let (train_top, train_bottom) = maps(&prior_split)?;
    let (test_top, test_bottom) = maps(&data.test.take(2000))?;
    let by_class = |m: &CodeMaps| {
        let m = m.clone();
        let e = engine.clone();
        move |idx: &[usize]| -> Result<Conditioning> {
            Ok(Conditioning {
                labels: Some(m.batch_labels(&e, idx)?),
                map: None,
            })
        }
    };
    let by_top = |m: &CodeMaps| {
        let m = m.clone();
        let e = engine.clone();
        let model = &model;
        move |idx: &[usize]| -> Result<Conditioning> {
            Ok(Conditioning {
                labels: None,
                map: Some(model.top_condition(&m.batch(&e, idx)?)?),
            })
        }
    };
    let top_training = PriorTraining {
        epochs: a.top_prior_epochs,
        batch: a.batch,
        lr: a.prior_lr,
        seed: a.common.run.seed,
    };
    let top_cfg = prior_config(&a, a.top_codes, 10, None);
    let top_prior = match loaded_top {
        Some(net) => net,
        None => {
            let net = PixelCnn::new(&engine, top_cfg, a.common.run.seed.wrapping_add(7))?;
            let task = Prior::new(net, (th, tw), Box::new(by_class(&train_top)));
            let path = out.join("top_prior.safetensors");
            vq_run::train_prior(
                "top prior",
                task,
                &train_top,
                &top_training,
                &path,
                a.common.run.resume,
            )?
        }
    };
    let bottom_prior = match loaded_bottom {
        Some(net) => net,
        None => {
            let net = PixelCnn::new(&engine, bottom_cfg, a.common.run.seed.wrapping_add(8))?;
            let task = Prior::new(net, (bh, bw), Box::new(by_top(&train_top)));
            let path = out.join("bottom_prior.safetensors");
            vq_run::train_prior(
                "bottom prior",
                task,
                &train_bottom,
                &PriorTraining {
                    epochs: a.bottom_prior_epochs,
                    ..top_training
                },
                &path,
                a.common.run.resume,
            )?
        }
    };
    let top_bits = prior::nll_bits(&top_prior, &test_top, &by_class(&test_top), 500)?;
    let bottom_bits = prior::nll_bits(&bottom_prior, &test_bottom, &by_top(&test_top), 200)?;
    println!("test prior nll: top {top_bits:.3}, bottom {bottom_bits:.3} bits/code");

    // Reconstructions from the top codes alone (bottom drawn from its prior given the top)
    // against both levels, on the first 200 test images; the first 10 go in the picture.
    let m = 200;
    let host = &data.test.images()[..m * 784];
    let x = Tensor::from_slice(&engine, host, &[m, 784])?;
    let (t, b) = model.encode_codes(&x)?;
    let from_top = model.decode_from_top(&t, &bottom_prior, a.common.run.seed + 2, 1.0)?;
    let both = model.decode_codes(&t, &b)?;
    let mse = |r: &Tensor| -> Result<f64> {
        let v = r.to_vec::<f32>()?;
        let sq: f64 = v
            .iter()
            .zip(host)
            .map(|(&p, &q)| ((p - q) as f64).powi(2))
            .sum();
        Ok(sq / (m * 784) as f64)
    };
    let (mse_top, mse_both) = (mse(&from_top)?, mse(&both)?);
    // The yardstick: predicting every test image by the mean training image.
    let mean = mean_image(&data.train);
    let mse_mean = host
        .chunks(784)
        .flat_map(|img| img.iter().zip(&mean))
        .map(|(&p, &q)| (p as f64 - q).powi(2))
        .sum::<f64>()
        / (m * 784) as f64;
    println!(
        "first {m} test images: mse from the top codes {mse_top:.5}, from both {mse_both:.5}, \
         of the mean training image {mse_mean:.5}"
    );
    let rows = [
        ("original", host),
        ("from top codes", &from_top.to_vec::<f32>()?[..]),
        ("from both levels", &both.to_vec::<f32>()?[..]),
    ];
    shared::save_rows(&out, "test images and their decodings", &rows)?;

    // Hierarchical sampling: top codes per class, then bottom codes given them, then pixels.
    let n = a.samples_per_class;
    let labels = vq_run::class_labels(n);
    let cond = Conditioning {
        labels: Some(Tensor::from_slice(&engine, &labels, &[labels.len()])?),
        map: None,
    };
    let judged = vq_run::sample_and_judge(
        &engine,
        &data,
        (&out, &a.common.judge.judge),
        (a.fid_samples, n),
        |round| {
            let seed = a.common.run.seed + 2 * round;
            let top_codes = top_prior.sample(&cond, labels.len(), (th, tw), seed, a.temperature)?;
            let map = Conditioning {
                labels: None,
                map: Some(model.top_condition(&top_codes)?),
            };
            let bottom_codes = bottom_prior.sample(&map, labels.len(), (bh, bw), seed + 1, 1.0)?;
            model.decode_codes(&top_codes, &bottom_codes)
        },
    )?;
    let minutes = start.elapsed().as_secs_f64() / 60.0;
    println!("end to end: {minutes:.1} minutes");
    let mut metrics = latent::io::Metrics::new("vqvae2");
    metrics
        .number("test_mse", test.mse)
        .number("test_mse_from_top_200", mse_top)
        .number("test_mse_mean_image_200", mse_mean)
        .number("top_codebook_usage", test.top_usage)
        .number("bottom_codebook_usage", test.bottom_usage)
        .integer("top_codes", a.top_codes as u64)
        .integer("bottom_codes", a.bottom_codes as u64)
        .number("top_prior_test_nll_bits_per_code", top_bits)
        .number("bottom_prior_test_nll_bits_per_code", bottom_bits)
        .number("top_temperature", a.temperature as f64)
        .number("minutes", minutes);
    judged.add_to(&mut metrics);
    vq_run::write_metrics(&out, &metrics)
}

/// The mean of `split`'s images, per pixel (f64).
fn mean_image(split: &Split) -> Vec<f64> {
    let pixels = split.pixels_per_image();
    let mut sum = vec![0.0f64; pixels];
    for img in split.images().chunks(pixels) {
        sum.iter_mut().zip(img).for_each(|(s, &p)| *s += p as f64);
    }
    sum.iter().map(|s| s / split.len().max(1) as f64).collect()
}

fn main() {
    let args = Args::parse();
    if let Err(e) = args.validate().and_then(|_| run(args)) {
        eprintln!("vqvae2: {e}");
        std::process::exit(1);
    }
}
