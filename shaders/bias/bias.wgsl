// A bias per output column or channel, `bias_at(n)`, read from binding 2: the matmul kernels
// add it to every row of C, conv2d's col2im to every pixel of a channel. Prepended by
// src/kernels/{matmul,conv2d}.rs when there is a bias; twin: no_bias.wgsl.

const HAS_BIAS: bool = true;

@group(0) @binding(2) var<storage, read> bias: array<f32>;

fn bias_at(n: u32) -> f32 { return bias[n]; }
