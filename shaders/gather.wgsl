// A batch of 8-bit images gathered from a data set held on the device and converted to f32,
// optionally binarised. Launcher: src/kernels/gather.rs; CPU twin and tests: kernels-tests/gather.rs.
//
// The data set is its bytes packed 4 per u32 word, little-endian: byte j is bits 8·(j % 4).. of
// word j / 4, and image k's pixels are bytes k·pixels.. (so a row need not start on a word).
// Row r of the batch is image order[start + r]; byte v becomes levels[v], a table the host
// fills with v / 255 as it rounds it, so the values are the host's bit for bit whatever the
// device's division. With BINARIZE, value x becomes 1 if u < x else 0, u the uniform of
// element lead + i of the Philox draw (key, off): random.wgsl's `bernoulli` on the same words.
// One invocation per Philox block of 4 values: `gather4` when pixels % 4 == 0 (then lead = 0,
// a block is one word of one row and one vec4 store), `gather1` for any size.

struct Params {
    n: u32,       // values to write: rows·pixels
    pixels: u32,  // pixels per image
    start: u32,   // the batch's first row in `order`
    lead: u32,    // out[i] is value lead + i of the draw (0..3)
    blocks: u32,  // ceil((lead + n) / 4): invocations with work
    key0: u32,    // Philox key (seed), low word
    key1: u32,
    off0: u32,    // Philox counter of the draw's first block, low word
    off1: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> images: array<u32>;
@group(0) @binding(1) var<storage, read> order: array<u32>;
@group(0) @binding(2) var<storage, read> levels: array<f32>;
// Each entry point uses one view: vec4 stores in `gather4`, scalar ones in `gather1`.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

// Draw Bernoulli(value) instead of writing the value.
override BINARIZE: bool = false;

const WG: u32 = 64u;

// Block index; grids above 65,535 workgroups are folded into y (and z).
fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

// Byte j of the data set.
fn byte_at(j: u32) -> u32 {
    return (images[j / 4u] >> (8u * (j % 4u))) & 0xffu;
}

// Output value i before binarisation: pixel i % pixels of row i / pixels.
fn value(i: u32) -> f32 {
    let image = order[p.start + i / p.pixels];
    return levels[byte_at(image * p.pixels + i % p.pixels)];
}

// x, or Bernoulli(x) drawn with the uniforms of block q.
fn draw(x: vec4<f32>, q: u32) -> vec4<f32> {
    if BINARIZE {
        let u = unit(philox_at(vec2(p.key0, p.key1), vec2(p.off0, p.off1), q));
        return select(vec4(0.0), vec4(1.0), u < x);
    }
    return x;
}

// pixels % 4 == 0: block q is word (image·pixels + c) / 4 of one row, c = 4q % pixels.
@compute @workgroup_size(64)
fn gather4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let q = index(wg, nwg, lid);
    if q >= p.blocks {
        return;
    }
    let i = 4u * q;
    let image = order[p.start + i / p.pixels];
    let w = images[(image * p.pixels + i % p.pixels) / 4u];
    let x = vec4(levels[w & 0xffu], levels[(w >> 8u) & 0xffu], levels[(w >> 16u) & 0xffu],
                 levels[w >> 24u]);
    out4[q] = draw(x, q);
}

// Any size: block q holds values 4q..4q+3 of the draw, out[4q + k - lead] those in 0..n.
// Loads outside are clamped to value 0 or n - 1 and their results dropped.
@compute @workgroup_size(64)
fn gather1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let q = index(wg, nwg, lid);
    if q >= p.blocks {
        return;
    }
    let j = 4u * q;
    let last = p.n - 1u;
    let at = vec4(j, j + 1u, j + 2u, j + 3u);
    let i = min(max(at, vec4(p.lead)) - vec4(p.lead), vec4(last));
    let x = draw(vec4(value(i.x), value(i.y), value(i.z), value(i.w)), q);
    let inside = at >= vec4(p.lead) & at < vec4(p.lead + p.n);
    if inside.x { out[i.x] = x.x; }
    if inside.y { out[i.y] = x.y; }
    if inside.z { out[i.z] = x.z; }
    if inside.w { out[i.w] = x.w; }
}
