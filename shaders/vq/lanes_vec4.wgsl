// vec4 loads of vq.wgsl's argmin (dist4: K % 4 == 0) and bucket sums (z4: D % 4 == 0). Prepended
// by src/kernels/vq.rs for launches whose sides allow it; twin: lanes_f32.wgsl.

// The first k of row `row` of dist with the smallest value (strictly smaller replaces).
fn argmin_row(row: u32) -> u32 {
    var best = bitcast<f32>(0x7f800000u);
    var code = 0u;
    let k4 = p.k / 4u;
    for (var c = 0u; c < k4; c++) {
        let v = dist4[row * k4 + c];
        if (v.x < best) { best = v.x; code = 4u * c; }
        if (v.y < best) { best = v.y; code = 4u * c + 1u; }
        if (v.z < best) { best = v.z; code = 4u * c + 2u; }
        if (v.w < best) { best = v.w; code = 4u * c + 3u; }
    }
    return code;
}

// Dimensions d..d+3 of row `row`, zeros past D (nothing is loaded when d >= D); the vec4 lies
// inside the row.
fn z4_at(row: u32, d: u32) -> vec4<f32> {
    if (d >= p.d) { return vec4(0.0); }
    return z4[(row * p.d + d) / 4u];
}
