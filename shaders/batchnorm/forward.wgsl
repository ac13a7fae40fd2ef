// `apply` of batchnorm.wgsl without the dy term (the forward passes): dy is not bound.
// Prepended by src/kernels/batchnorm.rs; twin: backward.wgsl.

const GRAD: bool = false;

fn dy_at(u: u32) -> V { return V(0.0); }
