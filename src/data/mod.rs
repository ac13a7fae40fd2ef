//! Data: the IDX reader, the Fashion-MNIST loader (train/test splits as f32 in [0, 1]), seeded
//! mini-batching with dynamic binarisation on the GPU, and the training set held on the device
//! as bytes (`DeviceSplit`). Tested by `tests/data.rs` (`cargo test --release --test data`).
//!
//! ```no_run
//! use latent::data::{Batches, FashionMnist};
//! let data = FashionMnist::load(None)?; // explicit dir, $LATENT_DATA, /usr/share/datasets/…
//! let batches = Batches::new(data.train.len(), 128, 7)?;
//! let mut x = Vec::new();
//! for epoch in 0..2 {
//!     let order = batches.epoch(epoch);
//!     for step in 0..order.len() {
//!         let idx = order.gather(&data.train, step, &mut x); // x: [idx.len(), 784]
//!     }
//! }
//! # Ok::<(), latent::Error>(())
//! ```

mod batches;
mod binarize;
pub mod colour;
mod device;
mod fashion;
pub mod idx;
pub mod motion;
pub mod photos;

pub use batches::{Batches, Epoch};
pub use binarize::{TEST_SEED, TRAIN_STREAM, binarized};
pub use device::DeviceSplit;
pub use fashion::{CLASS_NAMES, DATA_ENV, FashionMnist, PIXELS, SIDE, SYSTEM_DIR, Split};
