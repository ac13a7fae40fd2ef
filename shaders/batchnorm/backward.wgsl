// `apply` of batchnorm.wgsl with the dy term (dx of the backward pass).
// Prepended by src/kernels/batchnorm.rs; twin: forward.wgsl.

const GRAD: bool = true;

fn dy_at(u: u32) -> V { return dy[u]; }
