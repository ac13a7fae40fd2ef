// Philox-4x32-10 (Salmon et al. 2011), the counter-based generator of every draw on the GPU,
// and the uniform map of its words. Prepended by src/kernels/{random,gather}.rs; CPU twin and
// known answers: kernels-tests/random.rs.

// Random123's Philox-4x32 multipliers and Weyl key increments (Salmon et al. 2011, table 2).
const M0: u32 = 0xD2511F53u;
const M1: u32 = 0xCD9E8D57u;
const W0: u32 = 0x9E3779B9u;
const W1: u32 = 0xBB67AE85u;

struct HiLo {
    hi: vec2<u32>,
    lo: vec2<u32>,
}

// The high and low words of the 64-bit products a·b, lane-wise. WGSL has no 64-bit integers
// without an optional feature, but each product of 16-bit halves fits in 32 bits, and `mid`
// (at most 3·(2^16 - 1)) collects the carries into the high word exactly.
fn mulhilo(a: vec2<u32>, b: vec2<u32>) -> HiLo {
    let al = a & vec2(0xffffu);
    let ah = a >> vec2(16u);
    let bl = b & vec2(0xffffu);
    let bh = b >> vec2(16u);
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let mid = (ll >> vec2(16u)) + (lh & vec2(0xffffu)) + (hl & vec2(0xffffu));
    let hi = ah * bh + (lh >> vec2(16u)) + (hl >> vec2(16u)) + (mid >> vec2(16u));
    return HiLo(hi, a * b);
}

// One Philox round: two multiplies, the high words xored with the other words and the key,
// and the word shuffle (Random123's philox4x32round).
fn philox_round(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let m = mulhilo(vec2(M0, M1), c.xz);
    return vec4(m.hi.y ^ c.y ^ k.x, m.lo.y, m.hi.x ^ c.w ^ k.y, m.lo.x);
}

// Philox-4x32-10: round r uses key + r·(W0, W1). Unrolled by hand: the 10-iteration loop ran
// 1.6x slower on lavapipe (and loop iterations count towards its 65,535-per-invocation limit).
fn philox(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    let w = vec2(W0, W1);
    var c = philox_round(ctr, key);
    c = philox_round(c, key + w);
    c = philox_round(c, key + 2u * w);
    c = philox_round(c, key + 3u * w);
    c = philox_round(c, key + 4u * w);
    c = philox_round(c, key + 5u * w);
    c = philox_round(c, key + 6u * w);
    c = philox_round(c, key + 7u * w);
    c = philox_round(c, key + 8u * w);
    return philox_round(c, key + 9u * w);
}

// [0, 1) from the top 24 bits: every value k·2^-24 is an exact f32.
fn unit(x: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(x >> vec4(8u)) * 0x1p-24f;
}

// The 4 words of block q of the stream (key, off): counter = off + q as one 64-bit number (low
// word first) with the carry into the high word, then two zero words.
fn philox_at(key: vec2<u32>, off: vec2<u32>, q: u32) -> vec4<u32> {
    let lo = off.x + q;
    let hi = off.y + select(0u, 1u, lo < q);
    return philox(vec4(lo, hi, 0u, 0u), key);
}
