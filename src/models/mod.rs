//! Models assembled from tape ops; each exposes its parameters through `nn::Module` and its
//! training loss as tape values. The examples in `examples/` train and evaluate them.

pub mod aae;
pub mod biva;
pub mod classifier;
pub mod colorize;
pub mod conv_vae;
pub mod dfc_vae;
pub mod diverse;
pub mod feature_net;
pub mod fid;
pub mod forecast;
pub mod hierarchy;
pub mod ladder;
pub mod latent;
pub mod likelihood;
pub mod pixelcnn;
pub mod prior;
pub mod vae;
pub mod vq_nets;
pub mod vqvae;
pub mod vqvae2;
