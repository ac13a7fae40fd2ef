//! The ranks of a data-parallel run (feature `mpi`): MPI starts on first use in a process that
//! an MPI launcher (`mpirun`) started, and ends with the process. Tests: `tests/mpi.rs`.
//!
//! A process that exits with a non-zero status aborts the whole job (`MPI_Abort`), so that an
//! error on one rank never leaves the others waiting in a collective; a clean exit finalises.
//! Ranks other than 0 send their standard output to `/dev/null` (their lines would repeat rank
//! 0's); standard error stays, so every rank's error is seen.

use crate::engine::{Error, Result, Tensor};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::cell::RefCell;
use std::sync::{Mutex, OnceLock};

/// This process's place in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranks {
    pub rank: usize,
    pub size: usize,
    /// Rank among the processes on this machine (it picks the adapter).
    pub local_rank: usize,
}

/// Variables that MPI launchers (Open MPI, MPICH, PMIx, Slurm's PMI) set in what they start.
const LAUNCHED: [&str; 4] = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"];

static RANKS: OnceLock<Option<Ranks>> = OnceLock::new();

/// The universe that MPI_Finalize ends, taken at a clean exit.
static UNIVERSE: Mutex<Option<Owned>> = Mutex::new(None);

struct Owned(Universe);
// SAFETY: the universe is only touched by the exit handler after `main` returned or called
// `exit`, under the mutex; MPI is initialised with `MPI_THREAD_SINGLE` semantics.
unsafe impl Send for Owned {}

/// The run's ranks, or `None` in a process no MPI launcher started (a plain run: nothing of MPI
/// is touched). The first call initialises MPI.
pub fn get() -> Option<Ranks> {
    *RANKS.get_or_init(start)
}

/// Whether this process writes files and prints (rank 0, or not an MPI run).
pub fn is_root() -> bool {
    get().is_none_or(|r| r.rank == 0)
}

unsafe extern "C" {
    /// glibc: runs `f(status, arg)` at `exit`, with the exit status.
    fn on_exit(f: extern "C" fn(i32, *mut std::ffi::c_void), arg: *mut std::ffi::c_void) -> i32;
    fn dup2(old: i32, new: i32) -> i32;
}

fn start() -> Option<Ranks> {
    if !LAUNCHED.iter().any(|v| std::env::var_os(v).is_some()) {
        return None;
    }
    // `None` when a host program initialised MPI already: it also finalises it.
    let universe = mpi::initialize();
    let world = SimpleCommunicator::world();
    let local = world.split_shared(world.rank());
    let ranks = Ranks {
        rank: world.rank() as usize,
        size: world.size() as usize,
        local_rank: local.rank() as usize,
    };
    if let Some(u) = universe {
        *UNIVERSE.lock().unwrap() = Some(Owned(u));
        // SAFETY: registers a plain function with no argument.
        unsafe { on_exit(finish, std::ptr::null_mut()) };
    }
    if ranks.rank != 0
        && let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are open; stdout now points at /dev/null.
        unsafe { dup2(null.as_raw_fd(), 1) };
    }
    Some(ranks)
}

/// At exit: MPI_Finalize after a clean exit, MPI_Abort (every rank stops) after a failure.
extern "C" fn finish(status: i32, _: *mut std::ffi::c_void) {
    let universe = UNIVERSE.lock().map(|mut u| u.take()).ok().flatten();
    if status != 0 {
        let rank = get().map_or(0, |r| r.rank);
        eprintln!("rank {rank} exits with status {status}: aborting every rank of the job");
        SimpleCommunicator::world().abort(status);
    }
    // MPI_Finalize, as the universe ends.
    if let Some(Owned(universe)) = universe {
        drop(universe);
    }
}

fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

impl Ranks {
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Sums `data` over the ranks in place (`scratch` keeps the send copy between calls).
    pub fn sum_f32(&self, data: &mut [f32], scratch: &mut Vec<f32>) -> Result<()> {
        count(data.len())?;
        scratch.clear();
        scratch.extend_from_slice(data);
        world().all_reduce_into(&scratch[..], data, SystemOperation::sum());
        Ok(())
    }

    /// Sums `data` over the ranks in place (exact: integers).
    pub fn sum_u32(&self, data: &mut [u32]) -> Result<()> {
        count(data.len())?;
        let send = data.to_vec();
        world().all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }

    /// Every rank's `values` (the same count on each), rank after rank.
    pub fn gather_u64(&self, values: &[u64]) -> Result<Vec<u64>> {
        count(values.len() * self.size)?;
        let mut out = vec![0u64; values.len() * self.size];
        world().all_gather_into(values, &mut out[..]);
        Ok(out)
    }

    /// Rank 0's `bytes` on every rank (resized to its length).
    pub fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let world = world();
        let root = world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        // MPI counts are 32-bit: large states travel in pieces.
        for piece in bytes.chunks_mut(1 << 30) {
            root.broadcast_into(piece);
        }
        Ok(())
    }
}

/// MPI counts are C ints.
fn count(n: usize) -> Result<()> {
    match i32::try_from(n) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::Mpi(format!(
            "{n} elements exceed one MPI message (2^31 − 1)"
        ))),
    }
}

/// Statistics a layer computed from its own rank's batch during a training step, which every
/// rank must combine before using them (a quantiser's EMA counts and sums): the trainer sends
/// them with the step's gradients, in the same buffer, then calls `apply`.
pub struct Shared {
    /// f32 tensors summed over the ranks.
    pub sums: Vec<Tensor>,
    /// u32 tensors summed over the ranks.
    pub counts: Vec<Tensor>,
    /// f32 tensors that every rank replaces with rank 0's.
    pub from_root: Vec<Tensor>,
    /// Runs after the tensors hold the combined values.
    pub apply: Box<dyn FnOnce() -> Result<()>>,
}

thread_local! {
    /// `Some` while a data-parallel training step records (see [`Collecting`]).
    static PENDING: RefCell<Option<Vec<Shared>>> = const { RefCell::new(None) };
}

/// Hands `shared` to the data-parallel step being recorded; gives it back when there is none
/// (the caller then applies its statistics itself, as in a single process).
pub fn share(shared: Shared) -> Option<Shared> {
    PENDING.with(|p| match p.borrow_mut().as_mut() {
        Some(list) => {
            list.push(shared);
            None
        }
        None => Some(shared),
    })
}

/// Whether a data-parallel training step is being recorded on this thread.
pub fn collecting() -> bool {
    PENDING.with(|p| p.borrow().is_some())
}

/// While alive, layers hand their per-step statistics to [`share`]; [`Collecting::take`]
/// returns them. Dropping it (an error mid-step) stops collecting.
pub struct Collecting(());

impl Collecting {
    pub fn start() -> Collecting {
        PENDING.with(|p| *p.borrow_mut() = Some(Vec::new()));
        Collecting(())
    }

    /// What was shared so far; collecting goes on.
    pub fn take(&self) -> Vec<Shared> {
        PENDING.with(|p| {
            p.borrow_mut()
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default()
        })
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        PENDING.with(|p| *p.borrow_mut() = None);
    }
}
