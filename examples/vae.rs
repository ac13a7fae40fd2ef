//! The MLP VAE of Kingma & Welling on Fashion-MNIST (W1 of BENCH.md): trains with a progress
//! line per epoch, checkpoints atomically, then writes pictures and metrics.json. `--help` for flags.

#[path = "common/shared.rs"]
mod shared;
#[path = "common/vae_run.rs"]
mod vae_run;

fn main() {
    vae_run::main(
        "Train the MLP VAE on Fashion-MNIST, then write reconstructions, prior samples (and for \
         --latent 2 the manifold and latent scatter), the loss curve and metrics.json (test -ELBO, \
         IWAE-k NLL, active units).",
        vae_run::Kind::Mlp,
    );
}
