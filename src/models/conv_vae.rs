//! The convolutional VAE of BENCH.md's W2: Conv(1→32, k4 s2 p1) BN ReLU, Conv(32→64) BN ReLU,
//! flatten 3136 → (μ, log σ²) of 32; Linear 32→3136 ReLU, ConvT(64→32) BN ReLU, ConvT(32→1) →
//! Bernoulli logits. Example: `conv_vae`; tests: `tests/vae.rs`.

use super::vae::{Autoencoder, Dims};
use crate::engine::{Engine, Error, Result};
use crate::nn::{BatchNorm, Conv2d, ConvTranspose2d, Linear, Module, layer_seed};
use crate::tape::Var;

/// W2 on 28×28 single-channel images.
pub struct ConvVae {
    latent: usize,
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    /// The 3136→64 layer split into its μ and log σ² rows (as in the MLP VAE).
    mu: Linear,
    logvar: Linear,
    fc: Linear,
    deconv1: ConvTranspose2d,
    bn3: BatchNorm,
    deconv2: ConvTranspose2d,
}

/// Flattened encoder features: 64 channels of 7×7.
const FEATURES: usize = 64 * 7 * 7;

impl ConvVae {
    pub fn new(engine: &Engine, latent: usize, seed: u64) -> Result<ConvVae> {
        let s = |i: u64| layer_seed(seed, i);
        Ok(ConvVae {
            latent,
            conv1: Conv2d::new(engine, "encoder.conv1", 1, 32, 4, 2, 1, s(1))?,
            bn1: BatchNorm::new(engine, "encoder.bn1", 32)?,
            conv2: Conv2d::new(engine, "encoder.conv2", 32, 64, 4, 2, 1, s(2))?,
            bn2: BatchNorm::new(engine, "encoder.bn2", 64)?,
            mu: Linear::new(engine, "encoder.mu", FEATURES, latent, s(3))?,
            logvar: Linear::new(engine, "encoder.logvar", FEATURES, latent, s(4))?,
            fc: Linear::new(engine, "decoder.fc", latent, FEATURES, s(5))?,
            deconv1: ConvTranspose2d::new(engine, "decoder.deconv1", 64, 32, 4, 2, 1, 0, s(6))?,
            bn3: BatchNorm::new(engine, "decoder.bn3", 32)?,
            deconv2: ConvTranspose2d::new(engine, "decoder.deconv2", 32, 1, 4, 2, 1, 0, s(7))?,
        })
    }
}

fn unconditional(c: Option<&Var>) -> Result<()> {
    match c {
        None => Ok(()),
        Some(_) => Err(Error::bad(
            "ConvVae condition",
            "the convolutional VAE takes no condition",
        )),
    }
}

impl Autoencoder for ConvVae {
    fn dims(&self) -> Dims {
        Dims {
            input: 784,
            latent: self.latent,
            classes: 0,
        }
    }

    fn engine(&self) -> &Engine {
        self.mu.weight.value().engine()
    }

    fn encode(&self, x: &Var, c: Option<&Var>) -> Result<(Var, Var)> {
        unconditional(c)?;
        let b = x.shape()[0];
        let h = x.reshape(&[b, 1, 28, 28])?;
        let h = self.bn1.forward_relu(&self.conv1.forward(&h)?)?;
        let h = self.bn2.forward_relu(&self.conv2.forward(&h)?)?;
        let h = h.reshape(&[b, FEATURES])?;
        Ok((self.mu.forward(&h, false)?, self.logvar.forward(&h, false)?))
    }

    fn decode(&self, z: &Var, c: Option<&Var>) -> Result<Var> {
        unconditional(c)?;
        let b = z.shape()[0];
        let h = self.fc.forward(z, true)?.reshape(&[b, 64, 7, 7])?;
        let h = self.bn3.forward_relu(&self.deconv1.forward(&h)?)?;
        self.deconv2.forward(&h)?.reshape(&[b, 784])
    }

    fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("model".to_string(), "conv-vae-w2".to_string()),
            ("latent".to_string(), self.latent.to_string()),
        ]
    }
}

impl Module for ConvVae {
    fn children(&self) -> Vec<&dyn Module> {
        vec![
            &self.conv1,
            &self.bn1,
            &self.conv2,
            &self.bn2,
            &self.mu,
            &self.logvar,
            &self.fc,
            &self.deconv1,
            &self.bn3,
            &self.deconv2,
        ]
    }
}
