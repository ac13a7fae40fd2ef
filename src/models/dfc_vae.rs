//! DFC-VAE (Hou et al. 2016, "Deep Feature Consistent Variational Autoencoder"): the conv VAE
//! with its pixel reconstruction term replaced by the feature perceptual loss
//! Σ_l α_l ‖φ_l(x) − φ_l(x̂)‖² through the frozen feature network, plus β·KL. Example:
//! `dfc_vae`; tests: `tests/feature_net.rs`.

use super::conv_vae::ConvVae;
use super::feature_net::FeatureNet;
use super::vae::Autoencoder;
use crate::engine::{Engine, Error, Result};
use crate::kernels::random;
use crate::nn::Module;
use crate::optim::{Batch, StepInfo, Terms, Trainable};
use crate::tape::{Tape, Var};

/// Which feature layers the perceptual loss compares: the paper's VAE-123 (the first three
/// layers of its network) or VAE-345 (the third to the fifth); here φ1…φ3 are the three conv
/// blocks, φ4 the penultimate layer and φ5 the logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureLayers {
    /// φ1, φ2, φ3: edges and textures (the paper's sharper reconstructions).
    Shallow,
    /// φ3, φ4, φ5: parts and class evidence.
    Deep,
}

impl FeatureLayers {
    /// The layer numbers (1-based, as `FeatureNet::features` counts).
    pub fn layers(self) -> [usize; 3] {
        match self {
            FeatureLayers::Shallow => [1, 2, 3],
            FeatureLayers::Deep => [3, 4, 5],
        }
    }

    /// The paper's name of the choice.
    pub fn name(self) -> &'static str {
        match self {
            FeatureLayers::Shallow => "vae-123",
            FeatureLayers::Deep => "vae-345",
        }
    }
}

/// Σ_l α_l ‖φ_l(x) − φ_l(x̂)‖² summed over each layer's values and averaged over the batch,
/// `[1]`: `x` `[B, side²]` the target images (their features are constants), `xhat` `[B, side²]`
/// the images the gradient flows into; `net` should be frozen and in evaluation mode.
pub fn perceptual_loss(
    net: &FeatureNet,
    x: &Var,
    xhat: &Var,
    layers: &[usize],
    alpha: &[f32],
) -> Result<Var> {
    if layers.is_empty() || layers.len() != alpha.len() {
        return Err(Error::bad(
            "perceptual_loss",
            format!("{} layers with {} weights", layers.len(), alpha.len()),
        ));
    }
    let upto = *layers.iter().max().expect("not empty");
    let target = net.features(x, upto)?;
    let got = net.features(xhat, upto)?;
    let b = x.shape()[0] as f32;
    let mut total: Option<Var> = None;
    for (&l, &a) in layers.iter().zip(alpha) {
        let d = got[l - 1].sub(&target[l - 1].detach())?;
        let term = d.mul(&d)?.sum()?.affine(a / b, 0.0)?;
        total = Some(match total {
            None => term,
            Some(t) => t.add(&term)?,
        });
    }
    Ok(total.expect("one layer or more"))
}

/// The DFC-VAE: a conv VAE trained through a frozen feature network.
pub struct DfcVae {
    pub vae: ConvVae,
    net: FeatureNet,
    /// What the feature network is (its file's identity), stored in checkpoints.
    net_identity: String,
    pub layers: FeatureLayers,
    /// Weight α_l of each chosen layer.
    pub alpha: [f32; 3],
    pub beta: f32,
    /// Weight of the pixel term −log p(x|z) (Bernoulli, nats per image) kept beside the
    /// perceptual one; 0 (the paper's DFC-VAE) leaves it out.
    pub pixel: f32,
}

impl DfcVae {
    /// `net` is frozen here (its parameters become constants on every tape) and stays in
    /// evaluation mode: batch norm with its running statistics.
    pub fn new(
        vae: ConvVae,
        net: FeatureNet,
        net_identity: String,
        layers: FeatureLayers,
        alpha: [f32; 3],
        beta: f32,
    ) -> DfcVae {
        net.freeze();
        DfcVae {
            vae,
            net,
            net_identity,
            layers,
            alpha,
            beta,
            pixel: 0.0,
        }
    }

    /// The same model with the pixel term −log p(x|z) weighted by `weight` beside the
    /// perceptual one (0: the paper's loss). The perceptual loss alone leaves the decoder free
    /// to add texture the feature network does not see at its strides (a checkerboard in the
    /// samples); the pixel term pins the mean image. Measured on Fashion-MNIST it scored worse:
    /// it raised the KL, and the samples' Fréchet score with it (the `dfc_vae` example).
    pub fn with_pixel_term(mut self, weight: f32) -> Result<DfcVae> {
        if !(weight.is_finite() && weight >= 0.0) {
            let why = format!("the pixel term's weight must be finite and ≥ 0, got {weight}");
            return Err(Error::bad("DfcVae::with_pixel_term", why));
        }
        self.pixel = weight;
        Ok(self)
    }

    pub fn feature_net(&self) -> &FeatureNet {
        &self.net
    }
}

impl Module for DfcVae {
    /// Only the VAE: the feature network is neither trained nor saved with it.
    fn children(&self) -> Vec<&dyn Module> {
        vec![&self.vae]
    }
}

impl Trainable for DfcVae {
    fn engine(&self) -> &Engine {
        self.vae.engine()
    }

    fn describe(&self) -> Vec<(String, String)> {
        let mut d = Autoencoder::describe(&self.vae);
        d.push(("loss".into(), format!("dfc {}", self.layers.name())));
        d.push(("alpha".into(), format!("{:?}", self.alpha)));
        d.push(("beta".into(), self.beta.to_string()));
        d.push(("feature_net".into(), self.net_identity.clone()));
        if self.pixel > 0.0 {
            // Only when used, so checkpoints of the paper's loss keep their description.
            d.push(("pixel".into(), self.pixel.to_string()));
        }
        d
    }

    /// `loss` = perceptual + β·KL (+ the weighted pixel term), `perceptual`, `kl` (and
    /// `pixel`, −log p(x|z) in nats, when weighted), all batch means. The decoder's mean
    /// image sigmoid(logits) goes through the feature network; the noise of step s is Philox
    /// stream `seed` from block s·blocks(B·latent), as the pixel-loss VAE's.
    fn losses(&self, tape: &Tape, batch: &Batch, at: &StepInfo) -> Result<Terms> {
        let x = tape.input(&batch.x);
        let latent = self.vae.dims().latent;
        let blocks = random::blocks(at.batch * latent);
        let eps = self
            .vae
            .noise(batch.x.shape()[0], at.seed, at.step * blocks)?;
        let (mu, logvar) = self.vae.encode(&x, None)?;
        let z = mu.reparameterize(&logvar, &eps)?;
        let logits = self.vae.decode(&z, None)?;
        let xhat = logits.unary(crate::kernels::elementwise::Unary::Sigmoid)?;
        let perceptual = perceptual_loss(&self.net, &x, &xhat, &self.layers.layers(), &self.alpha)?;
        let kl = mu.kl_std_normal(&logvar)?.mean()?;
        let loss = perceptual.add(&kl.affine(self.beta, 0.0)?)?;
        if self.pixel == 0.0 {
            return Ok(vec![("loss", loss), ("perceptual", perceptual), ("kl", kl)]);
        }
        let pixel = logits.bce_with_logits(&batch.x)?.mean()?;
        let loss = loss.add(&pixel.affine(self.pixel, 0.0)?)?;
        Ok(vec![
            ("loss", loss),
            ("perceptual", perceptual),
            ("kl", kl),
            ("pixel", pixel),
        ])
    }
}
