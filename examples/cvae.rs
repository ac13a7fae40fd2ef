//! The conditional VAE (Sohn et al. 2015; Yan et al. 2016, "Attribute2Image") on Fashion-MNIST:
//! the one-hot class joins encoder and decoder. Writes class rows, style transfer, metrics.json.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;
#[path = "common/vae_run.rs"]
mod vae_run;

fn main() {
    vae_run::main(
        "Trains the class-conditional VAE on Fashion-MNIST and writes to --out its checkpoint, \
         samples_by_class.png (one labelled row per class), style_transfer.png, \
         reconstructions.png, loss_curve.svg, loss_curve.csv and metrics.json (conditional test \
         -ELBO, IWAE-k NLL, and the share of prior samples the feature network of --judge assigns to their label, the Fréchet score of 10,000 prior samples).",
        vae_run::Kind::Conditional,
    );
}
