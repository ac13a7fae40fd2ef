// Reductions of strided runs of a tensor (sum, max, log-sum-exp, softmax row statistics), one
// result per run. Launcher: src/kernels/reduce.rs; CPU twin and tests: kernels-tests/reduce.rs.
//
// Run o = (k, i) = (o / inner, o % inner) starts at k·kstride + i·istride and takes up to len
// elements estride apart, ending before (k + 1)·kstride and before the end of x. The launcher
// maps every reduction onto runs of at most 4,096 elements (longer ones take several passes):
//   last axis of [rows, cols], piece i of row k: kstride cols, istride 4096, estride 1;
//   first axis, rows chunk k of column i: kstride chunk·cols, istride 1, estride cols.
// One invocation per run and no barriers: on lavapipe a barrier is a coroutine switch, and a
// workgroup-per-row tree measured 1.2× (a few 1e5-long rows) to 140× (1e5 rows of 10) slower
// than this at every shape tried. Runs stay short because lavapipe silently ends any
// invocation's loops after 65,535 iterations in total (Mesa's LP_MAX_TGSI_LOOP_ITERATIONS).

struct Params {
    outputs: u32,  // number of runs (results)
    inner: u32,    // runs per k
    kstride: u32,  // element offset between consecutive k; a run ends before (k + 1)·kstride
    istride: u32,  // element offset between consecutive runs of one k
    estride: u32,  // element offset between consecutive elements of a run
    len: u32,      // elements of a run at most
    n: u32,        // elements of x (pairs when PAIRS)
    denom: f32,    // a sum is divided by this: the count for a mean, 1 otherwise
    // mean_pair: the scales 1/|a|, 1/|b| and b's weight w.
    scale_a: f32,
    scale_b: f32,
    weight: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
// reduce_rows4's views of the same bindings.
@group(0) @binding(0) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out4: array<vec4<f32>>;

// Result of a run: 0 sum / denom, 1 max, 2 log-sum-exp, 3 softmax statistics: the pair
// (m, log Σ exp(v − m)) with m the max, or (m, 0) when m is infinite. Specialised per pipeline.
override OP: u32 = 0u;
// The elements are such pairs from an earlier pass over pieces of long rows: a pair stands for
// m + log_sum, and merging pairs keeps the max apart from the sum as one pass would.
override PAIRS: bool = false;

// Eight of lavapipe's 8-lane SIMD batches; one or two waves on a GPU.
const WG: u32 = 64u;
// A run adds BLOCK elements into a block sum before adding that to its total, so the chain of
// f32 roundings is BLOCK + len/BLOCK ≤ 160 long instead of len ≤ 4,096.
const BLOCK: u32 = 32u;
const FLT_MAX: f32 = 3.40282347e38;

const SUM: u32 = 0u;
const MAX: u32 = 1u;
const SUM_EXP: u32 = 2u;

// Element e as (value, log-weight): log-weight 0 for plain elements.
fn load(e: u32) -> vec2<f32> {
    if PAIRS {
        return vec2<f32>(x[2u * e], x[2u * e + 1u]);
    }
    return vec2<f32>(x[e], 0.0);
}

fn merge(kind: u32, a: f32, b: f32) -> f32 {
    return select(a + b, max(a, b), kind == MAX);
}

// Sum or max of the values, or Σ exp(value − shift + log-weight), over count elements from base.
fn fold(kind: u32, base: u32, count: u32, shift: f32) -> f32 {
    // The first element is the identity of max: no infinity constant is needed.
    let identity = select(0.0, load(base).x, kind == MAX);
    var total = identity;
    for (var j0 = 0u; j0 < count; j0 += BLOCK) {
        var block = identity;
        let j1 = min(count, j0 + BLOCK);
        for (var j = j0; j < j1; j++) {
            let v = load(base + j * p.estride);
            block = merge(kind, block, select(v.x, exp((v.x - shift) + v.y), kind == SUM_EXP));
        }
        total = merge(kind, total, block);
    }
    return total;
}

@compute @workgroup_size(WG)
fn reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    // Linear workgroup id: grids above 65,535 workgroups are folded into y (and z).
    let o = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    if o >= p.outputs {
        return;
    }
    let k = o / p.inner;
    let base = k * p.kstride + (o % p.inner) * p.istride;
    let end = min(p.n, (k + 1u) * p.kstride);
    let count = min(p.len, (end - base + p.estride - 1u) / p.estride);

    if OP == 0u {
        out[o] = fold(SUM, base, count, 0.0) / p.denom;
        return;
    }
    let m = fold(MAX, base, count, 0.0);
    if OP == 1u {
        out[o] = m;
        return;
    }
    // Max-shifted: exp never overflows and the largest term is 1. An infinite max is the answer
    // (all −inf, or some +inf); shifting by it would give inf − inf = NaN.
    var log_sum = 0.0;
    if abs(m) <= FLT_MAX {
        log_sum = log(fold(SUM_EXP, base, count, m));
    }
    if OP == 2u {
        out[o] = m + log_sum;
    } else {
        out[2u * o] = m;
        out[2u * o + 1u] = log_sum;
    }
}

// First-axis sum / mean / max of [rows, cols] (cols % 4 == 0, rows ≤ 4,096: one pass), four
// columns per invocation: o = column / 4 < p.outputs, p.inner = cols / 4, p.len = rows. Each
// lane does reduce's arithmetic on its column in reduce's order (blocks of BLOCK), so the
// results are reduce's bit for bit, from a quarter of the loads (a bias gradient's column sums).
@compute @workgroup_size(WG)
fn reduce_rows4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let o = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    if o >= p.outputs {
        return;
    }
    let is_max = OP == MAX;
    let identity = select(vec4<f32>(0.0), x4[o], is_max);
    var total = identity;
    for (var j0 = 0u; j0 < p.len; j0 += BLOCK) {
        var block = identity;
        let j1 = min(p.len, j0 + BLOCK);
        for (var j = j0; j < j1; j++) {
            let v = x4[o + j * p.inner];
            block = select(block + v, max(block, v), is_max);
        }
        total = select(total + block, max(total, block), is_max);
    }
    out4[o] = select(total / p.denom, total, is_max);
}

// A loss from two per-row vectors in one pass: loss = mean(a) + w·mean(b) (a VAE's mean
// reconstruction term plus β times its mean KL), with both means kept for the step log.
// x = a (p.len values), y = b (p.n values), both ≤ 4,096: one invocation sums each in reduce's
// order (blocks of BLOCK), and the mean is the sum times 1/count, as Var::mean computes it.
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean_a: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_b: array<f32>;

fn sum_y(count: u32) -> f32 {
    var total = 0.0;
    for (var j0 = 0u; j0 < count; j0 += BLOCK) {
        var block = 0.0;
        let j1 = min(count, j0 + BLOCK);
        for (var j = j0; j < j1; j++) {
            block += y[j];
        }
        total += block;
    }
    return total;
}

@compute @workgroup_size(1)
fn mean_pair() {
    let ma = fold(SUM, 0u, p.len, 0.0) * p.scale_a;
    let mb = sum_y(p.n) * p.scale_b;
    mean_a[0] = ma;
    out_b[0] = mb;
    out[0] = ma + p.weight * mb;
}

// Its backward from the loss's gradient g = x[0]: da = g/|a| into out (p.len values), and
// db = g·w/|b| into out_b (p.n values).
@compute @workgroup_size(WG)
fn mean_pair_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    let g = x[0];
    if i < p.len {
        out[i] = g * p.scale_a;
    }
    if i < p.n {
        out_b[i] = g * p.weight * p.scale_b;
    }
}
