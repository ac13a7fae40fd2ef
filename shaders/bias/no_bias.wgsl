// No bias: `bias_at` is never read and no bias buffer is bound. Prepended by
// src/kernels/{matmul,conv2d}.rs when there is no bias; twin: bias.wgsl.

const HAS_BIAS: bool = false;

fn bias_at(n: u32) -> f32 { return 0.0; }
