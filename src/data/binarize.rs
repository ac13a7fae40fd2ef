//! Dynamic binarisation on the GPU (the benchmark protocol of the Ladder VAE and BIVA papers):
//! pixel x becomes 1 with probability x, drawn by the counter-based Philox generator
//! (`kernels::random`), so a draw depends on (seed, epoch, step) alone. Tests: `tests/likelihood.rs`.

use super::{Epoch, Split};
use crate::engine::{Engine, Result, Tensor};
use crate::kernels::random;

/// XORed into the run's seed for the training batches' draws: apart from the models' noise,
/// which uses the seed itself.
pub const TRAIN_STREAM: u64 = 0xB1A7_0000_0000_0000;

/// The one seed of the test set's binarisation, the same for every model and run, so that
/// their test figures score the same 0/1 images.
pub const TEST_SEED: u64 = 0xB1A7_7E57_0000_0001;

/// Test images binarised per launch: 1,000 images keep the draw at 3 MB.
const CHUNK: usize = 1000;

impl Epoch {
    /// The Philox (seed, offset) of batch `step`'s binarisation when the batches are binarised:
    /// stream `seed ^ TRAIN_STREAM`, each (epoch, step) its own counters, so every epoch
    /// draws afresh and a resumed run draws what the uninterrupted one did.
    pub fn binarization(&self, step: usize, pixels: usize) -> Option<(u64, u64)> {
        let (seed, batch, binarize) = self.settings();
        let per_step = random::blocks(batch * pixels);
        let index = self.index() * self.len() as u64 + step as u64;
        binarize.then_some((seed ^ TRAIN_STREAM, index * per_step))
    }
}

/// `split` with every pixel drawn once as Bernoulli(pixel) from stream `seed` on the GPU (the
/// fixed test set of the protocol: pass [`TEST_SEED`]); labels unchanged.
pub fn binarized(engine: &Engine, split: &Split, seed: u64) -> Result<Split> {
    let pixels = split.pixels_per_image();
    let mut images = Vec::with_capacity(split.images().len());
    for chunk in split.images().chunks(CHUNK * pixels) {
        let x = Tensor::from_slice(engine, chunk, &[chunk.len() / pixels, pixels])?;
        let offset = random::blocks(images.len());
        images.extend(random::bernoulli(&x, seed, offset)?.to_vec::<f32>()?);
    }
    let (rows, cols) = split.dims();
    Split::new(images, split.labels().to_vec(), rows, cols)
}
