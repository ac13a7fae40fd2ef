// Per-row weights of the row kernels' backward passes: row r's gradient is scaled by
// g[r]·scale. Prepended by src/kernels/rows.rs; twin: weight_scalar.wgsl.

@group(0) @binding(6) var<storage, read> g: array<f32>;  // [B]

fn weight(row: u32) -> f32 {
    return g[row] * p.scale;
}
