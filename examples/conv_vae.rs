//! The convolutional VAE with batch norm (W2 of BENCH.md) on Fashion-MNIST: same flags and
//! outputs as `vae`, including interpolation strips between test images. `--help` for flags.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;
#[path = "common/vae_run.rs"]
mod vae_run;

fn main() {
    vae_run::main(
        "Trains the convolutional VAE with batch norm (W2) on Fashion-MNIST and writes to --out \
         its checkpoint, reconstructions.png, samples.png, interpolation.png, loss_curve.svg, \
         loss_curve.csv and metrics.json (test -ELBO, IWAE-k NLL, active units).",
        vae_run::Kind::Conv,
    );
}
