// 8-float loads and stores of vq/search.wgsl from scalar f32 accesses: any D, no 64-bit integers.
// Prepended by src/kernels/vq.rs; twin: loads_wide.wgsl.
//
// A row is read in runs of 8 dimensions, the last run padded with zeros: a padded dimension adds
// fma(0, 0, s) = s to every chain, so dot products and norms are those of the D real dimensions.

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> e: array<f32>;
@group(0) @binding(3) var<storage, read_write> zq: array<f32>;

// Dimension d of the row starting at `base`, or 0 past the row (the index is clamped, so nothing
// outside the buffer is read).
fn at_z(base: u32, d: u32) -> f32 { return select(0.0, z[base + min(d, p.d - 1u)], d < p.d); }
fn at_e(base: u32, d: u32) -> f32 { return select(0.0, e[base + min(d, p.d - 1u)], d < p.d); }

fn load_z(row: u32, c: u32) -> Eight {
    let b = row * p.d; let d = 8u * c;
    return Eight(vec4(at_z(b, d), at_z(b, d + 2u), at_z(b, d + 4u), at_z(b, d + 6u)),
                 vec4(at_z(b, d + 1u), at_z(b, d + 3u), at_z(b, d + 5u), at_z(b, d + 7u)));
}

fn load_e(code: u32, c: u32) -> Eight {
    let b = code * p.d; let d = 8u * c;
    return Eight(vec4(at_e(b, d), at_e(b, d + 2u), at_e(b, d + 4u), at_e(b, d + 6u)),
                 vec4(at_e(b, d + 1u), at_e(b, d + 3u), at_e(b, d + 5u), at_e(b, d + 7u)));
}

fn put(b: u32, d: u32, v: f32) { if (d < p.d) { zq[b + d] = v; } }

fn store_zq(row: u32, c: u32, v: Eight) {
    let b = row * p.d; let d = 8u * c;
    put(b, d, v.lo.x); put(b, d + 1u, v.hi.x); put(b, d + 2u, v.lo.y); put(b, d + 3u, v.hi.y);
    put(b, d + 4u, v.lo.z); put(b, d + 5u, v.hi.z); put(b, d + 6u, v.lo.w); put(b, d + 7u, v.hi.w);
}
