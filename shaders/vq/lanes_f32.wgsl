// Scalar loads of vq.wgsl's argmin (dist, any K) and bucket sums (z, any D). Prepended by
// src/kernels/vq.rs; twin: lanes_vec4.wgsl (same results, a quarter of the loads).

// The first k of row `row` of dist with the smallest value (strictly smaller replaces).
fn argmin_row(row: u32) -> u32 {
    var best = bitcast<f32>(0x7f800000u);
    var code = 0u;
    for (var c = 0u; c < p.k; c++) {
        let v = dist[row * p.k + c];
        if (v < best) { best = v; code = c; }
    }
    return code;
}

fn z_at(i: u32, d: u32) -> f32 { return select(0.0, z[min(i, arrayLength(&z) - 1u)], d < p.d); }

// Dimensions d..d+3 of row `row`, zeros past D (nothing is loaded when d >= D).
fn z4_at(row: u32, d: u32) -> vec4<f32> {
    if (d >= p.d) { return vec4(0.0); }
    let i = row * p.d + d;
    return vec4(z_at(i, d), z_at(i + 1u, d + 1u), z_at(i + 2u, d + 2u), z_at(i + 3u, d + 3u));
}
