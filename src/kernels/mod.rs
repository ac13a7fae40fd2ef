//! Host launchers, one module per WGSL kernel family in `shaders/` (same name); each checks
//! shapes, computes the grid, writes the params uniform and records the dispatch.

pub mod elementwise;
pub mod reduce;
pub mod softmax;
