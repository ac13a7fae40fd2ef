// `apply` and `grad_stats` of batchnorm.wgsl for a batch norm fused with the ReLU after it:
// dy reaches the batch norm only where the fused output y = max(BN(x), 0) is positive (the
// ReLU's backward, elementwise.wgsl's MaskPositive). Prepended by src/kernels/batchnorm.rs.

const GRAD: bool = true;

@group(0) @binding(19) var<storage, read> y: array<V>;

fn dy_at(u: u32) -> V { return select(V(0.0), dy[u], y[u] > V(0.0)); }
