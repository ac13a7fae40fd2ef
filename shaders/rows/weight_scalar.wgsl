// One weight for every row of the row kernels' backward passes (`scale`); no weight buffer is
// bound. Prepended by src/kernels/rows.rs; twin: weight_row.wgsl.

fn weight(row: u32) -> f32 {
    return p.scale;
}
