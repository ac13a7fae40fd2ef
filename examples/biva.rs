//! BIVA (Maaløe et al. 2019), a reduced MLP or (`--conv`) the paper's convolutional architecture,
//! on Fashion-MNIST: bottom-up and top-down latent chains, skip connections from the latents to
//! the generative path, free bits; trains
//! through the one trainer with KL warm-up, then writes the lecture's pictures, per-layer KL
//! and active units, and the IWAE bound into metrics.json. `--help` for flags.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/hierarchy_run.rs"]
mod hierarchy_run;
#[path = "common/shared.rs"]
mod shared;

use clap::Parser;
use latent::models::biva::{Biva, BivaConfig, ConvBivaConfig};
use latent::models::hierarchy::Variance;

/// Trains a three-level MLP BIVA (deterministic 512-256-128; BU and TD latents of 32 and 16, a
/// top latent of 8) or, with --conv, a convolutional one (32-channel strided convolutions and
/// residual blocks; spatial BU and TD latents of 2 channels at 14x14 and 4 at 7x7, a dense top
/// latent of 16) and writes to --out its checkpoint, samples.png, reconstructions.png,
/// vary_level1.png … vary_level3.png (one level varied, the levels above held),
/// loss_curve.svg, kl_per_layer.svg, active_units.svg, kl_units.svg, layers.csv and
/// metrics.json (test -ELBO, IWAE-k NLL in nats and bits/dim, KL, active units and units
/// carrying KL per layer).
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    #[command(flatten)]
    common: hierarchy_run::Common,
    /// Free bits: each layer's batch-mean KL counts as at least this many nats in the loss, so
    /// no layer is pushed onto its prior below it (Kingma et al. 2016; 0: off).
    #[arg(long, default_value_t = 0.5)]
    free_bits: f32,
    /// No batch normalisation in the deterministic layers (ablation).
    #[arg(long)]
    no_batchnorm: bool,
    /// The paper's convolutional architecture with spatial latents instead of the MLP: about
    /// 4 times the MLP's time per epoch on a CPU adapter.
    #[arg(long)]
    conv: bool,
}

fn main() {
    let args = Args::parse();
    let batchnorm = !args.no_batchnorm;
    let variance: Variance = args.common.variance.into();
    let architecture = if args.conv { "conv" } else { "mlp" };
    let settings = [
        ("batchnorm", batchnorm.to_string()),
        ("architecture", architecture.to_string()),
        ("variance", variance.name().to_string()),
    ];
    let (seed, conv) = (args.common.run.seed, args.conv);
    let result = args
        .common
        .validate()
        .and_then(|_| flags::non_negative("--free-bits", args.free_bits as f64))
        .and_then(|_| {
            hierarchy_run::run(
                "biva",
                &args.common,
                args.free_bits,
                |engine| match conv {
                    true => Biva::conv(
                        engine,
                        ConvBivaConfig {
                            batchnorm,
                            variance,
                            ..ConvBivaConfig::default()
                        },
                        seed,
                    ),
                    false => Biva::new(
                        engine,
                        BivaConfig {
                            batchnorm,
                            variance,
                            ..BivaConfig::default()
                        },
                        seed,
                    ),
                },
                &settings,
            )
        });
    if let Err(e) = result {
        eprintln!("biva: {e}");
        std::process::exit(1);
    }
}
