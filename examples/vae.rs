//! The MLP VAE of Kingma & Welling on Fashion-MNIST (W1 of BENCH.md): trains with a progress
//! line per epoch, checkpoints atomically, then writes pictures and metrics.json. `--help` for flags.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;
#[path = "common/vae_run.rs"]
mod vae_run;

fn main() {
    vae_run::main(
        "Trains the MLP VAE of Kingma & Welling on Fashion-MNIST and writes to --out its \
         checkpoint, reconstructions.png, samples.png, interpolation.png, loss_curve.svg, \
         loss_curve.csv and metrics.json (test -ELBO, IWAE-k NLL, active units; with --latent 2 also \
         manifold.png and latent_scatter.svg).",
        vae_run::Kind::Mlp,
    );
}
