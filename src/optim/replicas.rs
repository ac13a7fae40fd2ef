//! Data-parallel training over MPI (feature `mpi`): what the one [`super::Trainer`] does when
//! `mpirun` started several ranks. Tests: `tests/mpi.rs` (real 2-rank runs).
//!
//! Every rank holds the whole model. A run starts by checking that every rank runs the same
//! command on the same settings, data and checkpoint, then takes rank 0's parameters, state and
//! optimizer state. Each step, each rank trains on its part of the global batch; after the
//! backward, the phase's gradients (weighted by the rank's share of the batch) and the
//! statistics layers shared (a quantiser's EMA counts and sums) travel in one flat buffer: one
//! readback, one MPI all-reduce, one upload. Every rank then takes the same optimizer step.

use super::Group;
use crate::data::Epoch;
use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::ranks::{self, Ranks, Shared};
use crate::tape::Param;
use std::cell::Cell;
use std::time::Instant;

/// The trainer's view of the other ranks (only when there are some).
pub(super) struct Replicas {
    pub ranks: Ranks,
    /// Each phase's parameters, in the optimizer's order.
    groups: Vec<Vec<Param>>,
    /// The send copy of the all-reduce, kept between steps.
    scratch: Vec<f32>,
    /// Time spent in the all-reduce so far.
    pub reduced: ReduceTime,
}

/// Time spent in the gradient all-reduce of a data-parallel run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReduceTime {
    /// Steps all-reduced.
    pub steps: u64,
    /// Seconds in all: copies into the flat buffer, readback, MPI, upload, copies back.
    pub seconds: f64,
    /// Seconds of those inside MPI (the transfer, and waiting for the slowest rank).
    pub mpi_seconds: f64,
}

/// What [`Replicas::agree`] compares, in the order of its fingerprint.
const COMPARED: [&str; 4] = [
    "command-line flags",
    "training settings",
    "training data",
    "checkpoint",
];

impl Replicas {
    /// `None` in a process that no MPI launcher started, or alone in its run.
    pub fn new(groups: &[Group]) -> Option<Replicas> {
        let ranks = ranks::get().filter(|r| r.size > 1)?;
        Some(Replicas {
            ranks,
            groups: groups.iter().map(|g| g.params.clone()).collect(),
            scratch: Vec::new(),
            reduced: ReduceTime::default(),
        })
    }

    /// At the start of a run: every rank learns whether any failed to get here (`local`) and
    /// whether its command line, `[settings, data, checkpoint]` fingerprints match rank 0's;
    /// every rank returns the same error otherwise, so none waits for another.
    pub fn agree(&self, local: Result<()>, fingerprint: [u64; 3]) -> Result<()> {
        let args: Vec<String> = std::env::args().collect();
        let flags = fingerprint_of(args.join("\0").as_bytes());
        let [settings, data, checkpoint] = fingerprint;
        let mine = [local.is_err() as u64, flags, settings, data, checkpoint];
        let all = self.ranks.gather_u64(&mine)?;
        local?;
        let rows: Vec<&[u64]> = all.chunks(mine.len()).collect();
        if let Some(rank) = rows.iter().position(|row| row[0] != 0) {
            return Err(Error::RankFailed { rank });
        }
        for (rank, row) in rows.iter().enumerate().skip(1) {
            if let Some(i) = (1..mine.len()).find(|&i| row[i] != rows[0][i]) {
                return Err(Error::RankMismatch {
                    rank,
                    ranks: self.ranks.size,
                    what: COMPARED[i - 1],
                });
            }
        }
        Ok(())
    }

    /// Rank 0's `tensors` and `counters` on every rank (one broadcast).
    pub fn broadcast(&self, tensors: &[(String, Tensor)], counters: &[&Cell<u64>]) -> Result<()> {
        let mut bytes = Vec::new();
        if self.ranks.is_root() {
            for (_, t) in tensors {
                match t.dtype() {
                    DType::F32 => bytes.extend(bytemuck::cast_slice(&t.to_vec::<f32>()?)),
                    DType::U32 => bytes.extend(bytemuck::cast_slice(&t.to_vec::<u32>()?)),
                }
            }
            for c in counters {
                bytes.extend(c.get().to_le_bytes());
            }
        }
        self.ranks.broadcast(&mut bytes)?;
        if self.ranks.is_root() {
            return Ok(());
        }
        let want = tensors.iter().map(|(_, t)| 4 * t.numel()).sum::<usize>() + 8 * counters.len();
        if bytes.len() != want {
            return Err(Error::Mpi(format!(
                "rank 0 sent {} bytes of state, this rank holds {want}",
                bytes.len()
            )));
        }
        let mut at = 0;
        for (_, t) in tensors {
            let piece = &bytes[at..at + 4 * t.numel()];
            match t.dtype() {
                DType::F32 => {
                    t.write_from_slice(&bytemuck::pod_collect_to_vec::<u8, f32>(piece))?
                }
                DType::U32 => {
                    t.write_from_slice(&bytemuck::pod_collect_to_vec::<u8, u32>(piece))?
                }
            }
            at += piece.len();
        }
        for c in counters {
            let word: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes");
            c.set(u64::from_le_bytes(word));
            at += 8;
        }
        Ok(())
    }

    /// After phase `phase`'s backward: the phase's gradients × `weight` (this rank's share of
    /// the global batch, so that the sum is the global batch's mean gradient) and what layers
    /// `shared`, in one flat buffer, read back once, summed over the ranks, written back once;
    /// then each shared statistic is applied.
    pub fn all_reduce(
        &mut self,
        phase: usize,
        engine: &Engine,
        weight: f32,
        shared: Vec<Shared>,
    ) -> Result<()> {
        let params = &self.groups[phase];
        for p in params {
            p.materialize_grad()?;
        }
        // The timer starts once the backward has run, so that it counts the all-reduce alone
        // (the readback below would wait for the backward anyway).
        engine.sync()?;
        let start = Instant::now();
        let grads: Vec<&Tensor> = params.iter().map(Param::grad).collect();
        let sums: Vec<&Tensor> = shared.iter().flat_map(|s| &s.sums).collect();
        let roots: Vec<&Tensor> = shared.iter().flat_map(|s| &s.from_root).collect();
        let counts: Vec<&Tensor> = shared.iter().flat_map(|s| &s.counts).collect();
        let floats: Vec<&Tensor> = [grads.as_slice(), &sums, &roots].concat();
        let [n_grads, roots_at, n_floats] =
            [&grads[..], &floats[..grads.len() + sums.len()], &floats].map(numel);
        let flat = Tensor::uninit(engine, &[n_floats + numel(&counts)], DType::F32)?;
        let words = flat.bits_as(DType::U32);
        copy_into(&floats, &flat, 0)?;
        copy_into(&counts, &words, n_floats)?;
        let mut host = flat.to_vec::<f32>()?;
        let (f, u) = host.split_at_mut(n_floats);
        f[..n_grads].iter_mut().for_each(|g| *g *= weight);
        if !self.ranks.is_root() {
            f[roots_at..].fill(0.0);
        }
        let mpi = Instant::now();
        self.ranks.sum_f32(f, &mut self.scratch)?;
        if !u.is_empty() {
            self.ranks.sum_u32(bytemuck::cast_slice_mut(u))?;
        }
        let mpi = mpi.elapsed();
        flat.write_from_slice(&host)?;
        copy_from(&flat, &floats, 0)?;
        copy_from(&words, &counts, n_floats)?;
        self.reduced.steps += 1;
        self.reduced.seconds += start.elapsed().as_secs_f64();
        self.reduced.mpi_seconds += mpi.as_secs_f64();
        for s in shared {
            (s.apply)()?;
        }
        Ok(())
    }

    /// At the end of an epoch: every batch-norm running mean and variance in `state` becomes
    /// its mean over the ranks (each rank normalised with its own batch statistics).
    pub fn average_running_stats(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let stats: Vec<&Tensor> = state
            .iter()
            .filter(|(n, t)| {
                t.dtype() == DType::F32
                    && (n.ends_with(".running_mean") || n.ends_with(".running_var"))
            })
            .map(|(_, t)| t)
            .collect();
        let Some(first) = stats.first() else {
            return Ok(());
        };
        let flat = Tensor::uninit(first.engine(), &[numel(&stats)], DType::F32)?;
        copy_into(&stats, &flat, 0)?;
        let mut host = flat.to_vec::<f32>()?;
        self.ranks.sum_f32(&mut host, &mut self.scratch)?;
        let share = 1.0 / self.ranks.size as f32;
        host.iter_mut().for_each(|v| *v *= share);
        flat.write_from_slice(&host)?;
        copy_from(&flat, &stats, 0)
    }

    /// An epoch's step log `[series, steps]` (this rank's batch means) becomes the global
    /// batch means: each step's value weighted by this rank's share of that batch, summed.
    pub fn reduce_log(&mut self, values: &mut [f32], epoch: &Epoch) -> Result<()> {
        let steps = epoch.len();
        for row in values.chunks_mut(steps) {
            for (s, v) in row.iter_mut().enumerate() {
                *v *= epoch.batch(s).len() as f32 / epoch.share(s).1 as f32;
            }
        }
        self.ranks.sum_f32(values, &mut self.scratch)
    }
}

/// Elements in `tensors`.
fn numel(tensors: &[&Tensor]) -> usize {
    tensors.iter().map(|t| t.numel()).sum()
}

/// Records copies of `tensors`, one after another, into `flat` from element `at`.
fn copy_into(tensors: &[&Tensor], flat: &Tensor, mut at: usize) -> Result<()> {
    for t in tensors {
        flat.engine().copy_region(t, 0, flat, at, t.numel())?;
        at += t.numel();
    }
    Ok(())
}

/// Records copies of `flat` from element `at` back into `tensors`.
fn copy_from(flat: &Tensor, tensors: &[&Tensor], mut at: usize) -> Result<()> {
    for t in tensors {
        flat.engine().copy_region(flat, at, t, 0, t.numel())?;
        at += t.numel();
    }
    Ok(())
}

/// A 64-bit fingerprint of `bytes` (FNV-1a): equal inputs give equal values on every rank.
pub(super) fn fingerprint_of(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
