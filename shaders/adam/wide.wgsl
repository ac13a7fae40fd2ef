// adam.wgsl's Adam / AdamW eight elements per invocation through vec4<u64> views (64-bit
// integers; length % 8 == 0; `p.n` counts 8-float units), appended to adam.wgsl on devices
// that have them. On llvmpipe every storage access is a per-lane loop costing about as much
// at 32 bytes as at 16, so this halves adam4's accesses. A unit's lo halves are its floats
// 0, 2, 4, 6 and its hi halves 1, 3, 5, 7; the same split of all four arrays keeps each
// element's update adam_update's own, bit for bit.

@group(0) @binding(0) var<storage, read> grad8: array<vec4<u64>>;
@group(0) @binding(1) var<storage, read_write> param8: array<vec4<u64>>;
@group(0) @binding(2) var<storage, read_write> m8: array<vec4<u64>>;
@group(0) @binding(3) var<storage, read_write> v8: array<vec4<u64>>;

fn lo(x: vec4<u64>) -> vec4<f32> { return bitcast<vec4<f32>>(vec4<u32>(x)); }
fn hi(x: vec4<u64>) -> vec4<f32> { return bitcast<vec4<f32>>(vec4<u32>(x >> vec4<u32>(32u))); }
fn pack(l: vec4<f32>, h: vec4<f32>) -> vec4<u64> {
    return vec4<u64>(bitcast<vec4<u32>>(l)) | (vec4<u64>(bitcast<vec4<u32>>(h)) << vec4<u32>(32u));
}

@compute @workgroup_size(256)
fn adam8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = index(wg, nwg, lid);
    if i >= p.n {
        return;
    }
    let g = grad8[i];
    let w = param8[i];
    let m0 = m8[i];
    let v0 = v8[i];
    let a = adam_update(lo(g), lo(w), lo(m0), lo(v0));
    let b = adam_update(hi(g), hi(w), hi(m0), hi(v0));
    m8[i] = pack(a.m, b.m);
    v8[i] = pack(a.v, b.v);
    param8[i] = pack(a.w, b.w);
}
