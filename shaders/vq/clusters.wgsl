// Per-code counts and sums of rows (cluster statistics for the codebook gradient and the EMA update),
// deterministic without float atomics: a stable counting sort of the rows by code, then every code
// adds its rows in row order, as the CPU twin does. Appended to vq.wgsl (its Params, bindings and
// helpers). Launcher: src/kernels/vq.rs (`cluster_sums`); tests: kernels-tests/vq.rs.
//
// A pass covers rows row_begin..row_end in `chunks` chunks of CHUNK rows (the launcher zeroes
// `table` first and splits batches so that no loop passes lavapipe's 65,535 steps):
// 1. vq_chunk_counts: table[c, k] = rows of chunk c with code k (an invocation per chunk);
// 2. vq_chunk_scan: table[c, k] = rows of code k in the chunks before c; scan[k] = its count;
// 3. vq_code_scan: scan[K + k] = Σ_{j<k} scan[j], where code k's rows start in `order`;
// 4. vq_scatter: order[scan[K + k] + table[c, k]++] = row, each chunk in row order (stable);
// 5. vq_bucket_sums: code k adds its rows, 32 dimensions per invocation: counts, sums.
// Why not a workgroup per group of codes scanning every row: each row then costs every workgroup
// a compare, and adding into a dynamically indexed private array is a per-lane loop on lavapipe
// (measured 8.8 ms at N = 6,272, K = 512, D = 64; this way is an order of magnitude cheaper).

const CHUNK: u32 = 256u;

fn chunk_rows(c: u32) -> vec2<u32> {
    let b = p.row_begin + c * CHUNK;
    return vec2(b, min(b + CHUNK, p.row_end));
}

@compute @workgroup_size(64)
fn vq_chunk_counts(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let c = linear(wg, nwg, lid);
    if (c >= p.chunks) { return; }
    let r = chunk_rows(c);
    for (var row = r.x; row < r.y; row++) {
        let k = idx[row];
        if (k < p.k) { table[c * p.k + k] += 1u; }
    }
}

@compute @workgroup_size(64)
fn vq_chunk_scan(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let k = linear(wg, nwg, lid);
    if (k >= p.k) { return; }
    var run = 0u;
    for (var c = 0u; c < p.chunks; c++) {
        let h = table[c * p.k + k];
        table[c * p.k + k] = run;
        run += h;
    }
    scan[k] = run;
}

@compute @workgroup_size(1)
fn vq_code_scan() {
    var run = 0u;
    for (var k = 0u; k < p.k; k++) {
        scan[p.k + k] = run;
        run += scan[k];
    }
}

@compute @workgroup_size(64)
fn vq_scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let c = linear(wg, nwg, lid);
    if (c >= p.chunks) { return; }
    let r = chunk_rows(c);
    for (var row = r.x; row < r.y; row++) {
        let k = idx[row];
        if (k < p.k) {
            let at = table[c * p.k + k];
            table[c * p.k + k] = at + 1u;
            order[scan_in[p.k + k] + at] = row;
        }
    }
}

fn put_sum(i: u32, ok: bool, v: f32) {
    if (ok) {
        var s = v;
        if (p.accumulate != 0u) { s += sums_out[i]; }
        sums_out[i] = s;
    }
}

fn put4(k: u32, d: u32, v: vec4<f32>) {
    let i = k * p.d + d;
    put_sum(i, d < p.d, v.x); put_sum(i + 1u, d + 1u < p.d, v.y);
    put_sum(i + 2u, d + 2u < p.d, v.z); put_sum(i + 3u, d + 3u < p.d, v.w);
}

// counts [K] and sums [K, D] (written, or added to with `accumulate`): invocation (span, k) adds
// dimensions 32·span..32·span+31 of code k's rows, in row order, from 0.
@compute @workgroup_size(64)
fn vq_bucket_sums(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let id = linear(wg, nwg, lid);
    if (id >= p.count) { return; }
    let k = id % p.k;
    let s = (id / p.k) * 32u;
    let start = scan_in[p.k + k];
    let n = scan_in[k];
    var a0 = vec4(0.0); var a1 = vec4(0.0); var a2 = vec4(0.0); var a3 = vec4(0.0);
    var a4 = vec4(0.0); var a5 = vec4(0.0); var a6 = vec4(0.0); var a7 = vec4(0.0);
    for (var i = start; i < start + n; i++) {
        let row = order_in[i];
        a0 += z4_at(row, s); a1 += z4_at(row, s + 4u); a2 += z4_at(row, s + 8u); a3 += z4_at(row, s + 12u);
        a4 += z4_at(row, s + 16u); a5 += z4_at(row, s + 20u); a6 += z4_at(row, s + 24u); a7 += z4_at(row, s + 28u);
    }
    if (s == 0u) {
        var c = n;
        if (p.accumulate != 0u) { c += counts_out[k]; }
        counts_out[k] = c;
    }
    put4(k, s, a0); put4(k, s + 4u, a1); put4(k, s + 8u, a2); put4(k, s + 12u, a3);
    put4(k, s + 16u, a4); put4(k, s + 20u, a5); put4(k, s + 24u, a6); put4(k, s + 28u, a7);
}
