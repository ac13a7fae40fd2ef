// 8-float loads and stores of vq/search.wgsl through vec4<u64> views: rows a multiple of 8 floats
// long (D % 8 == 0), devices with SHADER_INT64. Prepended by src/kernels/vq.rs; twin: loads_f32.wgsl.
//
// On lavapipe a storage access is a loop over the SIMD lanes whatever its width up to 4 components,
// and a vec4<u64> access moves 8 floats for about 1.2 times the cost of a vec4<f32> one.

@group(0) @binding(0) var<storage, read> z8: array<vec4<u64>>;
@group(0) @binding(1) var<storage, read> e8: array<vec4<u64>>;
@group(0) @binding(3) var<storage, read_write> zq8: array<vec4<u64>>;

// The two halves of an 8-float run (little-endian: float 2i is the low word of u64 i).
fn eight(x: vec4<u64>) -> Eight {
    return Eight(bitcast<vec4<f32>>(vec4<u32>(x)), bitcast<vec4<f32>>(vec4<u32>(x >> vec4<u32>(32u))));
}

// Dimensions 8c..8c+7 of row `row` of z / of code `code` of e.
fn load_z(row: u32, c: u32) -> Eight { return eight(z8[row * p.d8 + c]); }
fn load_e(code: u32, c: u32) -> Eight { return eight(e8[code * p.d8 + c]); }

fn store_zq(row: u32, c: u32, v: Eight) {
    zq8[row * p.d8 + c] = vec4<u64>(bitcast<vec4<u32>>(v.lo)) | (vec4<u64>(bitcast<vec4<u32>>(v.hi)) << vec4<u32>(32u));
}
