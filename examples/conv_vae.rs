//! The convolutional VAE with batch norm (W2 of BENCH.md) on Fashion-MNIST: same flags and
//! outputs as `vae`, including interpolation strips between test images. `--help` for flags.

#[path = "common/shared.rs"]
mod shared;
#[path = "common/vae_run.rs"]
mod vae_run;

fn main() {
    vae_run::main(
        "Train the convolutional VAE (conv/BN encoder, transposed-conv/BN decoder) on \
         Fashion-MNIST, then write reconstructions, prior samples, interpolation.png (linear and \
         spherical paths between test images), the loss curve and metrics.json (test -ELBO, \
         IWAE-k NLL, active units).",
        vae_run::Kind::Conv,
    );
}
