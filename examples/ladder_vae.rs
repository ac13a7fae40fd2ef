//! The Ladder VAE of Sønderby et al. (2016), the paper's MLP model, on Fashion-MNIST: trains
//! through the one trainer with KL warm-up and batch norm, then writes the lecture's pictures,
//! per-layer KL and active units, and the IWAE bound into metrics.json. `--help` for flags.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/hierarchy_run.rs"]
mod hierarchy_run;
#[path = "common/shared.rs"]
mod shared;

use clap::Parser;
use latent::models::ladder::{LadderConfig, LadderVae};

/// Trains the MLP Ladder VAE (deterministic 512-256-128-64-32, stochastic 64-32-16-8-4) and
/// writes to --out its checkpoint, samples.png, reconstructions.png, vary_level1.png …
/// vary_level5.png (z_l varied, the levels above held), loss_curve.svg, kl_per_layer.svg,
/// active_units.svg, kl_units.svg, layers.csv and metrics.json (test -ELBO, IWAE-k NLL in
/// nats and bits/dim, KL, active units and units carrying KL per layer).
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    #[command(flatten)]
    common: hierarchy_run::Common,
    /// No batch normalisation in the deterministic layers (ablation).
    #[arg(long)]
    no_batchnorm: bool,
    /// The same five levels with the ordinary bottom-up stochastic inference network
    /// q(z_i | z_{i-1}) instead of the ladder's precision-weighted merge (ablation).
    #[arg(long)]
    plain_hierarchy: bool,
}

fn main() {
    let args = Args::parse();
    let config = LadderConfig {
        batchnorm: !args.no_batchnorm,
        variance: args.common.variance.into(),
        ladder: !args.plain_hierarchy,
        ..LadderConfig::default()
    };
    let settings = [
        ("batchnorm", config.batchnorm.to_string()),
        ("variance", config.variance.name().to_string()),
        (
            "inference",
            if config.ladder {
                "ladder merge"
            } else {
                "plain bottom-up"
            }
            .to_string(),
        ),
    ];
    let seed = args.common.run.seed;
    let result = args.common.validate().and_then(|_| {
        hierarchy_run::run(
            "ladder_vae",
            &args.common,
            0.0,
            |engine| LadderVae::new(engine, config, seed),
            &settings,
        )
    });
    if let Err(e) = result {
        eprintln!("ladder_vae: {e}");
        std::process::exit(1);
    }
}
