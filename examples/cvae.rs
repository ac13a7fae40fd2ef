//! The conditional VAE (Sohn et al. 2015; Yan et al. 2016, "Attribute2Image") on Fashion-MNIST:
//! the one-hot class joins encoder and decoder. Writes class rows, style transfer, metrics.json.

#[path = "common/shared.rs"]
mod shared;
#[path = "common/vae_run.rs"]
mod vae_run;

fn main() {
    vae_run::main(
        "Train the class-conditional VAE on Fashion-MNIST, then write samples_by_class.png (one \
         row per class), style_transfer.png (each test image re-decoded with every label), \
         reconstructions, the loss curve and metrics.json (conditional test -ELBO, IWAE-k NLL, and \
         the share of prior samples z ~ N(0, I) that an MLP classifier trained on the training \
         images assigns to the label they were decoded under).",
        vae_run::Kind::Conditional,
    );
}
