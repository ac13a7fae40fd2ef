//! latent: variational autoencoders on wgpu, with hand-written WGSL kernels and their CPU twins.
//! Build with `cargo build --release`; test with `cargo test --release` (the README is a doctest).
#![doc = include_str!("../README.md")]

pub mod data;
pub mod dist;
pub mod engine;
pub mod io;
pub mod kernels;
pub mod models;
pub mod nn;
pub mod optim;
#[cfg(feature = "mpi")]
pub mod ranks;
pub mod tape;

pub use engine::{
    Access, Bind, BindingProblem, CheckpointProblem, DType, DataProblem, Engine, Error,
    FolderProblem, Grid, Result, Stats, Tensor,
};
