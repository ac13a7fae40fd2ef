//! The training set on the device: 8-bit images uploaded once as bytes, the epoch's permutation
//! once per epoch, and each batch gathered, converted and binarised there by one dispatch
//! (`kernels::gather`), so a training step uploads nothing. Tested by `tests/data.rs`
//! (`cargo test --release --test data device`) and `tests/trainer.rs` (bit-identical runs).

use super::{Epoch, Split};
use crate::engine::{Engine, Error, Result, Tensor};
use crate::kernels::gather::{self, Binarize};
use crate::optim::{Batch, Examples};
use std::sync::Mutex;

/// A [`Split`] of 8-bit images held on the device as bytes, packed 4 per u32 (a quarter of
/// its f32 size: 47 MB for Fashion-MNIST's 60,000 images of 784 pixels). The trainer batches it
/// as it batches the `Split`, to the bit: the same rows in the same order, each pixel
/// `v as f32 / 255.0`, and the same binarisation draws ([`Epoch::binarization`]). Labels stay
/// on the host.
pub struct DeviceSplit {
    /// The images' bytes, u32 `[⌈n·pixels / 4⌉]` as `gather::pack` lays them out.
    images: Tensor,
    /// What each byte stands for, f32 `[256]`: `gather::unit_levels`.
    levels: Tensor,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    /// The permutation of the epoch batched last.
    order: Mutex<Option<Order>>,
}

/// An epoch's permutation on the device, u32 `[n]`, and what identifies it: (seed, epoch, n).
struct Order {
    key: (u64, u64, usize),
    tensor: Tensor,
}

impl DeviceSplit {
    /// `split` uploaded once, as bytes. Every pixel must be a grey level `v as f32 / 255.0`
    /// exactly, as Fashion-MNIST's are ([`Error::NotEightBit`] names the first that is not).
    ///
    /// The bytes are one storage binding, so they must fit the device's
    /// `max_storage_buffer_binding_size` (at least 128 MiB on every WebGPU device: 171,196
    /// images of 784 pixels). A larger split is [`Error::BindingTooLarge`], before any upload:
    /// train it from the host ([`Split`] implements [`Examples`] too).
    pub fn new(engine: &Engine, split: &Split) -> Result<DeviceSplit> {
        const OP: &str = "DeviceSplit::new";
        let pixels = split.images();
        let bytes = pixels.len().next_multiple_of(4) as u64;
        let limit = engine.limits().max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::BindingTooLarge {
                op: OP,
                bytes,
                limit,
            });
        }
        let bytes = pixels
            .iter()
            .enumerate()
            .map(|(index, &value)| {
                let v = (value * 255.0).round();
                let level = (0.0..=255.0).contains(&v).then_some(v as u8);
                match level.filter(|&b| (b as f32 / 255.0).to_bits() == value.to_bits()) {
                    Some(b) => Ok(b),
                    None => Err(Error::NotEightBit {
                        op: OP,
                        index,
                        value,
                    }),
                }
            })
            .collect::<Result<Vec<u8>>>()?;
        let words = gather::pack(&bytes);
        let (rows, cols) = split.dims();
        Ok(DeviceSplit {
            images: Tensor::from_slice(engine, &words, &[words.len()])?,
            levels: Tensor::from_slice(engine, &gather::unit_levels(), &[256])?,
            labels: split.labels().to_vec(),
            rows,
            cols,
            order: Mutex::new(None),
        })
    }

    /// Image side lengths (rows, cols); the number of images is [`Examples::count`].
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// All labels, `[n]`.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The images' bytes on the device, u32 `[⌈n·pixels / 4⌉]`, 4 per word, little-endian.
    pub fn bytes(&self) -> &Tensor {
        &self.images
    }

    /// `epoch`'s permutation on the device, u32 `[n]`: uploaded by the first call for an
    /// epoch, then the same tensor until another epoch is asked for.
    pub fn order(&self, engine: &Engine, epoch: &Epoch) -> Result<Tensor> {
        let n = epoch.order().len();
        if n != self.labels.len() {
            return Err(Error::ShapeMismatch {
                op: "DeviceSplit::order",
                lhs: vec![n],
                rhs: vec![self.labels.len()],
            });
        }
        let key = (epoch.settings().0, epoch.index(), n);
        let mut cached = self.order.lock().unwrap();
        if let Some(order) = &*cached
            && order.key == key
        {
            return Ok(order.tensor.clone());
        }
        let order: Vec<u32> = epoch.order().iter().map(|&i| i as u32).collect();
        let tensor = Tensor::from_slice(engine, &order, &[n])?;
        *cached = Some(Order {
            key,
            tensor: tensor.clone(),
        });
        Ok(tensor)
    }

    /// Batch `step` of `epoch` (this rank's part of it in a data-parallel run), f32
    /// `[B, pixels]`, binarised when the epoch's batches are: one dispatch, no upload once the
    /// epoch's order is on the device.
    pub fn gather(&self, engine: &Engine, epoch: &Epoch, step: usize) -> Result<Tensor> {
        let order = self.order(engine, epoch)?;
        let span = epoch.span(step);
        let pixels = self.rows * self.cols;
        // A rank's part draws what its rows draw in the whole batch: from its first element.
        let binarize = epoch
            .binarization(step, pixels)
            .map(|(seed, offset)| Binarize {
                seed,
                offset,
                first: epoch.share(step).0 * pixels,
            });
        let rows = (span.start, span.len());
        gather::gather(&self.images, &self.levels, &order, rows, pixels, binarize)
    }
}

impl Examples for DeviceSplit {
    /// Number of images.
    fn count(&self) -> usize {
        self.labels.len()
    }

    /// The permutation's one upload of the epoch.
    fn start_epoch(&self, engine: &Engine, epoch: &Epoch) -> Result<()> {
        self.order(engine, epoch).map(drop)
    }

    /// Images `[B, pixels]` gathered on the device ([`DeviceSplit::gather`]); labels and
    /// indices from the host.
    fn batch(&self, engine: &Engine, epoch: &Epoch, step: usize) -> Result<Batch> {
        let x = self.gather(engine, epoch, step)?;
        let indices = epoch.batch(step).to_vec();
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Batch { x, labels, indices })
    }
}
