//! Mini-batches: a fresh seeded permutation per epoch, batch by batch, optionally marked for
//! dynamic binarisation (drawn on the GPU after the upload: `binarize.rs`). Tested by `tests/data.rs` (coverage, reproducibility, 469 steps).

use super::Split;
use crate::{Error, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Epoch orders for `n` examples in batches of `batch_size`.
///
/// Epoch `e`'s order depends only on `(seed, e)`, so a run resumed at epoch `e`, step `s`
/// sees exactly the batches the uninterrupted run would have seen.
#[derive(Clone, Debug)]
pub struct Batches {
    n: usize,
    batch_size: usize,
    seed: u64,
    drop_last: bool,
    binarize: bool,
}

impl Batches {
    /// `n` examples in batches of `batch_size`; the last partial batch is kept (60,000 images
    /// at B = 128 give 469 steps, as in BENCH.md) and pixels are not binarised.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Batches> {
        if n == 0 || batch_size == 0 {
            return Err(Error::bad(
                "Batches::new",
                format!(
                    "need examples and a batch size above 0, got n = {n}, batch = {batch_size}"
                ),
            ));
        }
        Ok(Batches {
            n,
            batch_size,
            seed,
            drop_last: false,
            binarize: false,
        })
    }

    /// Drops the last batch when it is smaller than `batch_size`.
    pub fn drop_last(mut self, drop: bool) -> Batches {
        self.drop_last = drop;
        self
    }

    /// Marks the batches for dynamic binarisation, x ~ Bernoulli(pixel) drawn afresh each epoch
    /// (see [`Epoch::binarization`]).
    pub fn binarize(mut self, binarize: bool) -> Batches {
        self.binarize = binarize;
        self
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        if self.drop_last {
            self.n / self.batch_size
        } else {
            self.n.div_ceil(self.batch_size)
        }
    }

    /// Whether an epoch has no batch (drop_last with fewer examples than one batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The order of epoch `epoch`: a permutation of 0..n from a generator seeded by
    /// `(seed, epoch)` alone.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let mut order: Vec<usize> = (0..self.n).collect();
        order.shuffle(&mut stream(self.seed, epoch, 0, b"order\0\0\0"));
        Epoch {
            index: epoch,
            order,
            config: self.clone(),
            part: None,
        }
    }
}

/// One epoch's permutation, read batch by batch.
#[derive(Clone, Debug)]
pub struct Epoch {
    index: u64,
    order: Vec<usize>,
    config: Batches,
    /// `(rank, ranks)`: only this rank's slice of every batch (see [`Epoch::part`]).
    part: Option<(usize, usize)>,
}

impl Epoch {
    /// The epoch number.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The whole permutation.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Batches in this epoch.
    pub fn len(&self) -> usize {
        self.config.len()
    }

    pub fn is_empty(&self) -> bool {
        self.config.is_empty()
    }

    /// Rank `rank`'s part of this epoch among `ranks` data-parallel ranks: of every batch, the
    /// rows [⌊rank·B/ranks⌋, ⌊(rank + 1)·B/ranks⌋), so that the parts of all ranks are the
    /// batch, in order. Binarisation draws as for the whole batch.
    pub fn part(mut self, rank: usize, ranks: usize) -> Epoch {
        assert!(rank < ranks, "rank {rank} of {ranks}");
        self.part = Some((rank, ranks));
        self
    }

    /// The whole batch `step` (every rank's part).
    pub(crate) fn whole(&self, step: usize) -> &[usize] {
        &self.order[self.whole_span(step)]
    }

    /// Where the whole batch `step` lies in [`Epoch::order`].
    fn whole_span(&self, step: usize) -> std::ops::Range<usize> {
        assert!(
            step < self.len(),
            "batch {step} of an epoch of {}",
            self.len()
        );
        let b = self.config.batch_size;
        step * b..((step + 1) * b).min(self.order.len())
    }

    /// Where batch `step`, or this rank's part of it, lies in [`Epoch::order`]: the positions
    /// of [`Epoch::batch`]'s indices (panics if `step >= len()`).
    pub fn span(&self, step: usize) -> std::ops::Range<usize> {
        let whole = self.whole_span(step);
        match self.part {
            None => whole,
            Some((rank, ranks)) => {
                let n = whole.len();
                whole.start + rank * n / ranks..whole.start + (rank + 1) * n / ranks
            }
        }
    }

    /// Where batch `step` of this (part of an) epoch lies in the whole batch: its first row and
    /// the whole batch's rows (`(0, len)` for a whole epoch).
    pub fn share(&self, step: usize) -> (usize, usize) {
        let (whole, mine) = (self.whole_span(step), self.span(step));
        (mine.start - whole.start, whole.len())
    }

    /// The example indices of batch `step`, or of this rank's part of it (panics if
    /// `step >= len()`).
    pub fn batch(&self, step: usize) -> &[usize] {
        &self.order[self.span(step)]
    }

    /// The batches in order; `.skip(s)` resumes at step `s`.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[usize]> + '_ {
        (0..self.len()).map(|s| self.batch(s))
    }

    /// Gathers batch `step` of `split` into `out` (`[B, pixels]`, grey values) and returns its
    /// example indices.
    pub fn gather(&self, split: &Split, step: usize, out: &mut Vec<f32>) -> &[usize] {
        let indices = self.batch(step);
        split.gather(indices, out);
        indices
    }

    /// The batches' seed, configured batch size and whether they are binarised.
    pub(super) fn settings(&self) -> (u64, usize, bool) {
        let c = &self.config;
        (c.seed, c.batch_size, c.binarize)
    }
}

impl<'a> IntoIterator for &'a Epoch {
    type Item = &'a [usize];
    type IntoIter = Box<dyn ExactSizeIterator<Item = &'a [usize]> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// An independent generator for each (seed, a, b, purpose): the ChaCha key is the four
/// words, so streams never overlap and none depends on how far another was drawn.
fn stream(seed: u64, a: u64, b: u64, purpose: &[u8; 8]) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&a.to_le_bytes());
    key[16..24].copy_from_slice(&b.to_le_bytes());
    key[24..].copy_from_slice(purpose);
    StdRng::from_seed(key)
}
