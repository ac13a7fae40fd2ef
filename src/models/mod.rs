//! Models assembled from tape ops; each exposes its parameters through `nn::Module` and its
//! training loss as tape values. The examples in `examples/` train and evaluate them.

pub mod classifier;
pub mod colorize;
pub mod conv_vae;
pub mod diverse;
pub mod forecast;
pub mod latent;
pub mod pixelcnn;
pub mod prior;
pub mod vae;
pub mod vq_nets;
pub mod vqvae;
pub mod vqvae2;
