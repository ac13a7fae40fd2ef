//! Launchers of the vector-quantisation family: the fused nearest-code search (`shaders/vq/`),
//! and `shaders/vq.wgsl`'s norms, argmin, cluster sums, histogram, gradients, EMA and dead-code
//! reset. CPU twin and tests: `kernels-tests/vq.rs`; bench: `bench -- kernels`.
//!
//! The distance of row z to code e is `fma(−2, z·e, ‖e‖²)` in f32, z·e and ‖e‖² each one fma
//! chain over the dimensions in order, ‖z‖² left out (it does not change the argmin); ties go to
//! the lowest code. Every search path computes exactly this, so their indices agree bit for bit
//! (WGSL leaves an fma's rounding to the device, once or twice; the paths share the device).

use super::elementwise as ew;
use super::matmul::{self, Matmul};
use super::reduce;
use super::{matmul_subgroup, matmul_wide};
use crate::engine::{Bind, DType, Engine, Error, Result, Shader, Tensor, shader};

/// `shaders/vq.wgsl` with the cluster sums of `shaders/vq/clusters.wgsl`, no optional features:
/// argmin and bucket sums with scalar loads (any K and D) and with vec4 loads (`dist4` for
/// K % 4 == 0, `z4` for D % 4 == 0).
pub const SHADERS: [Shader; 2] = [
    shader!("vq", "vq/lanes_f32.wgsl", "vq.wgsl", "vq/clusters.wgsl"),
    shader!("vq_v4", "vq/lanes_vec4.wgsl", "vq.wgsl", "vq/clusters.wgsl"),
];

/// The fused search with 8-float loads (D % 8 == 0, subgroups and 64-bit integers) and with
/// scalar loads (any D, subgroups).
pub const SEARCH: [Shader; 2] = [
    shader!("vq_search_wide", "vq/loads_wide.wgsl", "vq/search.wgsl"),
    shader!("vq_search", "vq/loads_f32.wgsl", "vq/search.wgsl"),
];

/// Rows and codes of one search workgroup; rows of one counting-sort chunk and dimensions of one
/// bucket-sums invocation (`vq/clusters.wgsl`).
const ROW_TILE: usize = 32;
const CODE_TILE: usize = 16;
const CHUNK: usize = 256;
const SPAN: usize = 32;
const WG: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    d: u32,
    count: u32,
    row_begin: u32,
    row_end: u32,
    accumulate: u32,
    threshold: u32,
    scale: f32,
    decay: f32,
    eps: f32,
    chunks: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SearchParams {
    n: u32,
    k: u32,
    d: u32,
    d8: u32,
    row_tiles: u32,
    tile_begin: u32,
    tile_end: u32,
    first: u32,
}

/// Codebook bytes one search dispatch covers: a block stays in a CPU core's L2 cache while the
/// row tiles pass over it.
const BLOCK_BYTES: usize = 256 << 10;

/// Which kernels find the nearest codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Search {
    /// The fused search when the device has subgroups, else the matmul path.
    #[default]
    Auto,
    /// `vq/search.wgsl`: tiles of 32 rows × 16 codes, the argmin kept in registers.
    Fused,
    /// The plain way: ‖e‖² and −2e, then Z·(−2E)ᵀ + ‖e‖² with `matmul` ([N, K] in memory) and
    /// `vq_argmin` over it.
    Matmul,
}

/// A quantised batch: `indices` u32 `[N]`, `z_q` `[N, D]` = `codebook[indices]`, `sq_err` `[N]` =
/// Σ_d (z − z_q)² per row.
pub struct Quantized {
    pub indices: Tensor,
    pub z_q: Tensor,
    pub sq_err: Tensor,
}

/// Per-code statistics of a batch: `counts` u32 `[K]` and `sums` `[K, D]` = Σ of each code's rows.
pub struct Clusters {
    pub counts: Tensor,
    pub sums: Tensor,
}

/// (N, K, D) of rows z [N, D] and a codebook [K, D].
fn dims(op: &'static str, z: &Tensor, codebook: &Tensor) -> Result<(usize, usize, usize)> {
    for t in [z, codebook] {
        t.expect_dtype(op, DType::F32)?;
        if t.shape().len() != 2 {
            return Err(Error::bad(
                op,
                format!("expects [rows, D], got {:?}", t.shape()),
            ));
        }
    }
    let (n, d) = (z.shape()[0], z.shape()[1]);
    let (k, dk) = (codebook.shape()[0], codebook.shape()[1]);
    if d != dk {
        return Err(Error::ShapeMismatch {
            op,
            lhs: z.shape().to_vec(),
            rhs: codebook.shape().to_vec(),
        });
    }
    if u32::try_from(n.max(k) * d).is_err() {
        return Err(Error::bad(
            op,
            "more than 2^32 - 1 elements (indices are u32)",
        ));
    }
    Ok((n, k, d))
}

/// Errors unless `t` is u32 `[len]`.
fn expect_codes(op: &'static str, t: &Tensor, len: usize) -> Result<()> {
    t.expect_dtype(op, DType::U32)?;
    t.expect_shape(op, &[len])
}

/// Refuses a launch whose invocations would loop more often than the driver allows.
fn check_steps(engine: &Engine, op: &'static str, steps: usize) -> Result<()> {
    match engine.max_loop_iterations() {
        Some(limit) if steps + 64 > limit as usize => Err(Error::bad(
            op,
            format!("needs {steps} loop steps per invocation; this driver allows {limit}"),
        )),
        _ => Ok(()),
    }
}

/// Launches `entry` of vq.wgsl (vec4 loads when `vec4`) over `groups` workgroups with boolean
/// override constants `flags`.
fn launch(
    entry: &'static str,
    vec4: bool,
    flags: &[(&'static str, bool)],
    tensors: &[Bind],
    p: &Params,
    groups: usize,
) -> Result<()> {
    let constants: Vec<_> = flags.iter().map(|&(f, on)| (f, on as u8 as f64)).collect();
    let shader = &SHADERS[vec4 as usize];
    super::launch(shader, entry, &constants, tensors, p, groups as u32)
}

/// Launches one invocation per item (`count` of them) of a 64-wide entry point.
fn per_item(entry: &'static str, tensors: &[Bind], p: Params, count: usize) -> Result<()> {
    per_item_with(entry, &[], tensors, p, count)
}

fn per_item_with(
    entry: &'static str,
    flags: &[(&'static str, bool)],
    tensors: &[Bind],
    p: Params,
    count: usize,
) -> Result<()> {
    let p = Params {
        count: count as u32,
        ..p
    };
    launch(entry, false, flags, tensors, &p, count.div_ceil(WG))
}

/// The nearest code of each row of `z` `[N, D]` in `codebook` `[K, D]`: u32 `[N]`.
pub fn nearest(z: &Tensor, codebook: &Tensor) -> Result<Tensor> {
    nearest_with(z, codebook, Search::Auto)
}

/// [`nearest`] by the chosen kernels.
pub fn nearest_with(z: &Tensor, codebook: &Tensor, search: Search) -> Result<Tensor> {
    Ok(run_search(z, codebook, search, false)?.indices)
}

/// The nearest codes, z_q and the per-row squared error of `z` [N, D] against `codebook` [K, D].
pub fn quantize(z: &Tensor, codebook: &Tensor) -> Result<Quantized> {
    quantize_with(z, codebook, Search::Auto)
}

/// [`quantize`] by the chosen kernels.
pub fn quantize_with(z: &Tensor, codebook: &Tensor, search: Search) -> Result<Quantized> {
    run_search(z, codebook, search, true)
}

/// Indices (and, to quantize, z_q and errors) by the fused or the matmul path; without
/// `quantize` the z_q and error tensors are placeholders.
fn run_search(z: &Tensor, codebook: &Tensor, search: Search, quantize: bool) -> Result<Quantized> {
    let (n, _, d) = dims("vq search", z, codebook)?;
    let engine = z.engine();
    let fused = match search {
        Search::Auto => matmul_subgroup::usable(engine),
        Search::Fused if !matmul_subgroup::usable(engine) => {
            return Err(Error::bad(
                "vq search",
                "the fused search needs subgroups of at least 8",
            ));
        }
        Search::Fused => true,
        Search::Matmul => false,
    };
    let indices = Tensor::uninit(engine, &[n], DType::U32)?;
    let q = match quantize {
        true => Quantized {
            z_q: Tensor::uninit(engine, &[n, d], DType::F32)?,
            sq_err: Tensor::uninit(engine, &[n], DType::F32)?,
            indices,
        },
        false => Quantized {
            z_q: indices.clone(),
            sq_err: indices.clone(),
            indices,
        },
    };
    match fused {
        true => fused_search(z, codebook, &q, quantize)?,
        false => matmul_search(z, codebook, &q, quantize)?,
    }
    Ok(q)
}

/// `vq/search.wgsl` over blocks of about BLOCK_BYTES of codes, one dispatch each.
fn fused_search(z: &Tensor, codebook: &Tensor, q: &Quantized, quantize: bool) -> Result<()> {
    let (n, k, d) = dims("vq search", z, codebook)?;
    let engine = z.engine();
    let wide = d.is_multiple_of(8) && matmul_wide::usable(engine);
    let (d8, code_tiles) = (d.div_ceil(8), k.div_ceil(CODE_TILE));
    let mut per_block = BLOCK_BYTES / (CODE_TILE * 4 * d);
    if let Some(limit) = engine.max_loop_iterations() {
        per_block = per_block.min((limit as usize).saturating_sub(64 + 4 * d8) / (d8 + 1));
    }
    let per_block = per_block.max(1);
    check_steps(engine, "vq search", per_block * (d8 + 1) + 4 * d8)?;
    let best = Tensor::uninit(engine, &[n], DType::F32)?;
    let mut p = SearchParams {
        n: n as u32,
        k: k as u32,
        d: d as u32,
        d8: d8 as u32,
        row_tiles: n.div_ceil(ROW_TILE) as u32,
        tile_begin: 0,
        tile_end: 0,
        first: 1,
    };
    for begin in (0..code_tiles).step_by(per_block) {
        let end = (begin + per_block).min(code_tiles);
        (p.tile_begin, p.tile_end, p.first) = (begin as u32, end as u32, (begin == 0) as u32);
        // The wide loads view z, the codebook and z_q in 8-float units.
        let [z_var, e_var, zq_var] = match wide {
            true => ["z8", "e8", "zq8"],
            false => ["z", "e", "zq"],
        };
        let mut tensors = vec![
            Bind::read(z_var, z),
            Bind::read(e_var, codebook),
            Bind::write("indices", &q.indices),
            Bind::write("best", &best),
        ];
        let entry = match quantize && end == code_tiles {
            true => {
                tensors.extend([Bind::write(zq_var, &q.z_q), Bind::write("err", &q.sq_err)]);
                "vq_quantize"
            }
            false => "vq_nearest",
        };
        let shader = &SEARCH[!wide as usize];
        super::launch(shader, entry, &[], &tensors, &p, p.row_tiles)?;
    }
    Ok(())
}

/// The [N, K] distances by the matmul ([`distances`]), then `vq_argmin` over each row.
fn matmul_search(z: &Tensor, codebook: &Tensor, q: &Quantized, quantize: bool) -> Result<()> {
    let (n, k, d) = dims("vq search", z, codebook)?;
    let dist = distances(z, codebook)?;
    check_steps(z.engine(), "vq argmin", k + d)?;
    let p = Params {
        n: n as u32,
        k: k as u32,
        d: d as u32,
        ..Params::default()
    };
    let vec4 = k.is_multiple_of(4);
    let mut tensors = vec![
        Bind::read(if vec4 { "dist4" } else { "dist" }, &dist),
        Bind::write("indices_out", &q.indices),
    ];
    let entry = match quantize {
        true => {
            tensors.extend([
                Bind::read("z", z),
                Bind::read("e", codebook),
                Bind::write("zq_out", &q.z_q),
                Bind::write("err_out", &q.sq_err),
            ]);
            "vq_argmin_quantize"
        }
        false => "vq_argmin",
    };
    launch(entry, vec4, &[], &tensors, &p, n.div_ceil(WG))
}

/// ‖e_k‖² of every code of `codebook` `[K, D]`: `[K]` (one fma chain per code, in order).
pub fn code_norms(codebook: &Tensor) -> Result<Tensor> {
    let (_, k, d) = dims("vq norms", codebook, codebook)?;
    check_steps(codebook.engine(), "vq norms", d)?;
    let out = Tensor::uninit(codebook.engine(), &[k], DType::F32)?;
    let p = Params {
        k: k as u32,
        d: d as u32,
        ..Params::default()
    };
    let tensors = [Bind::read("e", codebook), Bind::write("norms_out", &out)];
    per_item("vq_norms", &tensors, p, k)?;
    Ok(out)
}

/// The distance matrix [N, K] of `vq_argmin`: ‖e_k‖² − 2 z_n·e_k as Z·(−2E)ᵀ + ‖e‖² by the matmul
/// (bit-identical to the fused search's `fma(−2, z·e, ‖e‖²)`: scaling by −2 is exact).
pub fn distances(z: &Tensor, codebook: &Tensor) -> Result<Tensor> {
    dims("vq distances", z, codebook)?;
    let norms = code_norms(codebook)?;
    let minus2 = ew::affine(codebook, -2.0, 0.0)?;
    let opts = Matmul {
        trans_b: true,
        bias: Some(&norms),
        ..Default::default()
    };
    matmul::matmul_with(z, &minus2, &opts)
}

/// Rows of one cluster-sums pass: a code's bucket loop may cover them all, so they stay below
/// the driver's loop limit; longer batches take several passes, each adding to the sums.
fn rows_per_pass(engine: &Engine) -> usize {
    engine
        .max_loop_iterations()
        .map_or(usize::MAX, |l| l as usize - 1024)
}

/// Counts and sums of the rows of `z` `[N, D]` per code of `indices` u32 `[N]` (codes ≥ `k` are
/// skipped): a stable counting sort by code, then each code adds its rows in row order
/// (deterministic, no atomics; see `shaders/vq/clusters.wgsl`). Five dispatches per pass.
pub fn cluster_sums(z: &Tensor, indices: &Tensor, k: usize) -> Result<Clusters> {
    let op = "vq cluster sums";
    let (n, _, d) = dims(op, z, z)?;
    expect_codes(op, indices, n)?;
    if k == 0 {
        return Err(Error::bad(op, "a codebook needs at least one code"));
    }
    let engine = z.engine();
    check_steps(engine, op, k)?;
    let pass = rows_per_pass(engine).min(n);
    let counts = Tensor::uninit(engine, &[k], DType::U32)?;
    let sums = Tensor::uninit(engine, &[k, d], DType::F32)?;
    let table = Tensor::uninit(engine, &[pass.div_ceil(CHUNK), k], DType::U32)?;
    let scan = Tensor::uninit(engine, &[2 * k], DType::U32)?;
    let order = Tensor::uninit(engine, &[pass], DType::U32)?;
    let buckets = k * d.div_ceil(SPAN);
    for begin in (0..n).step_by(pass) {
        let end = (begin + pass).min(n);
        let chunks = (end - begin).div_ceil(CHUNK);
        let p = Params {
            n: n as u32,
            k: k as u32,
            d: d as u32,
            count: buckets as u32,
            row_begin: begin as u32,
            row_end: end as u32,
            accumulate: (begin > 0) as u32,
            chunks: chunks as u32,
            ..Params::default()
        };
        engine.clear(&table)?;
        let counting = [Bind::read("idx", indices), Bind::write("table", &table)];
        launch(
            "vq_chunk_counts",
            false,
            &[],
            &counting,
            &p,
            chunks.div_ceil(WG),
        )?;
        let scanning = [Bind::write("table", &table), Bind::write("scan", &scan)];
        launch("vq_chunk_scan", false, &[], &scanning, &p, k.div_ceil(WG))?;
        launch(
            "vq_code_scan",
            false,
            &[],
            &[Bind::write("scan", &scan)],
            &p,
            1,
        )?;
        let scatter = [
            Bind::read("idx", indices),
            Bind::read("scan_in", &scan),
            Bind::write("table", &table),
            Bind::write("order", &order),
        ];
        launch("vq_scatter", false, &[], &scatter, &p, chunks.div_ceil(WG))?;
        let vec4 = d.is_multiple_of(4);
        let sums_in = [
            Bind::read(if vec4 { "z4" } else { "z" }, z),
            Bind::read("scan_in", &scan),
            Bind::read("order_in", &order),
            Bind::write("counts_out", &counts),
            Bind::write("sums_out", &sums),
        ];
        let groups = buckets.div_ceil(WG);
        launch("vq_bucket_sums", vec4, &[], &sums_in, &p, groups)?;
    }
    Ok(Clusters { counts, sums })
}

/// `counts` u32 `[K]` += the number of entries of each code in `indices` (u32, any shape; codes
/// ≥ K are skipped). Atomic increments: the counts are exact whatever the order.
pub fn histogram_into(indices: &Tensor, counts: &Tensor) -> Result<()> {
    indices.expect_dtype("vq histogram", DType::U32)?;
    let n = indices.numel();
    let k = counts.numel();
    expect_codes("vq histogram", counts, k)?;
    let p = Params {
        n: n as u32,
        k: k as u32,
        ..Params::default()
    };
    let tensors = [Bind::read("idx", indices), Bind::write("hist", counts)];
    per_item("vq_histogram", &tensors, p, n)
}

/// One step's code counts u32 `[K]` into the usage trackers: `epoch` += counts, and `idle` (u32
/// `[K]`, steps since each code was last used) restarts at 0 for used codes and grows for the rest.
pub fn track_usage(counts: &Tensor, epoch: &Tensor, idle: &Tensor) -> Result<()> {
    let k = counts.numel();
    for t in [counts, epoch, idle] {
        expect_codes("vq usage", t, k)?;
    }
    let p = Params {
        k: k as u32,
        ..Params::default()
    };
    let tensors = [
        Bind::read("counts", counts),
        Bind::write("epoch", epoch),
        Bind::write("idle", idle),
    ];
    per_item("vq_usage", &tensors, p, k)
}

/// Writes (or adds, `accumulate`) into `out` [K, D] the codebook's gradient of
/// `w·Σ_n ‖sg[z_n] − e_{code n}‖²`: `g·scale·(count_k·e_k − Σ_{n of k} z_n)`, where `g` is f32 `[1]`
/// on the GPU and `scale` = 2w (2w/(N·D) for a mean).
pub fn codebook_grad_into(
    codebook: &Tensor,
    clusters: &Clusters,
    g: &Tensor,
    scale: f32,
    out: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let op = "vq codebook grad";
    let (_, k, d) = dims(op, codebook, &clusters.sums)?;
    clusters.sums.expect_shape(op, codebook.shape())?;
    expect_codes(op, &clusters.counts, k)?;
    g.expect_shape(op, &[1])?;
    out.expect_shape(op, codebook.shape())?;
    let p = Params {
        d: d as u32,
        scale,
        accumulate: accumulate as u32,
        ..Params::default()
    };
    let tensors = [
        Bind::read("e", codebook),
        Bind::read("counts", &clusters.counts),
        Bind::read("sums", &clusters.sums),
        Bind::read("scalar", g),
        Bind::write("grad", out),
    ];
    per_item("vq_codebook_grad", &tensors, p, k * d)
}

/// Writes (or adds) into `out` [N, D] the rows' gradient of `w·Σ ‖z − sg[z_q]‖²`:
/// `g·scale·(z − z_q)`, `g` f32 `[1]` on the GPU, `scale` = 2w (2w/(N·D) for a mean).
pub fn commitment_grad_into(
    z: &Tensor,
    z_q: &Tensor,
    g: &Tensor,
    scale: f32,
    out: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let op = "vq commitment grad";
    dims(op, z, z_q)?;
    z_q.expect_shape(op, z.shape())?;
    out.expect_shape(op, z.shape())?;
    g.expect_shape(op, &[1])?;
    let p = Params {
        scale,
        accumulate: accumulate as u32,
        ..Params::default()
    };
    let tensors = [
        Bind::read("z", z),
        Bind::read("zq", z_q),
        Bind::read("scalar", g),
        Bind::write("grad", out),
    ];
    per_item("vq_commitment_grad", &tensors, p, z.numel())
}

/// EMA codebook state: cluster sizes N `[K]` and sums m `[K, D]` (start with zeros, or with ones and
/// the codebook for a codebook that means something from the first step).
pub struct EmaState<'a> {
    pub sizes: &'a Tensor,
    pub sums: &'a Tensor,
}

/// One EMA codebook update from a batch's clusters (van den Oord et al. 2017, appendix A.1):
/// N_k ← γN_k + (1 − γ)n_k, m_k ← γm_k + (1 − γ)Σz, then e_k = m_k / Ñ_k with Laplace smoothing
/// Ñ_k = (N_k + ε)/(n + Kε)·n, n = Σ N. Three kernels and a sum; the codebook is overwritten.
pub fn ema_update(
    codebook: &Tensor,
    state: &EmaState,
    clusters: &Clusters,
    decay: f32,
    eps: f32,
) -> Result<()> {
    let op = "vq ema";
    let (_, k, d) = dims(op, codebook, state.sums)?;
    state.sums.expect_shape(op, codebook.shape())?;
    clusters.sums.expect_shape(op, codebook.shape())?;
    state.sizes.expect_dtype(op, DType::F32)?;
    state.sizes.expect_shape(op, &[k])?;
    expect_codes(op, &clusters.counts, k)?;
    check_steps(codebook.engine(), op, d)?;
    let p = Params {
        k: k as u32,
        d: d as u32,
        decay,
        eps,
        ..Params::default()
    };
    let stats = [
        Bind::read("counts", &clusters.counts),
        Bind::read("sums", &clusters.sums),
        Bind::write("ema_size", state.sizes),
        Bind::write("ema_sum", state.sums),
    ];
    per_item("vq_ema_stats", &stats, p, k)?;
    let total = reduce::sum_all(state.sizes)?;
    let tensors = [
        Bind::read("sums", state.sums),
        Bind::read("sizes", state.sizes),
        Bind::read("scalar", &total),
        Bind::write("codebook", codebook),
    ];
    per_item("vq_ema_codebook", &tensors, p, k)
}

/// The rows a dead-code reset copies: code k takes row `rows[k]` (u32 `[K]`, clamped to N − 1), or
/// row ⌊u_k·N⌋ for uniforms u (f32 `[K]` in [0, 1), e.g. a `random::uniform_into` draw: random
/// rows without an upload).
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    Given(&'a Tensor),
    Uniform(&'a Tensor),
}

/// Dead-code reset: every code of `codebook` [K, D] unused for `threshold` steps (per `idle`, see
/// [`track_usage`]) becomes a row of `z` [N, D] (the caller's choice, e.g. random rows of the
/// current encoder outputs) and its idle count restarts. With an EMA state, the reset codes'
/// N_k = 1 and m_k = the new code. No readback: the test runs on the GPU.
pub fn reset_dead(
    codebook: &Tensor,
    idle: &Tensor,
    threshold: u32,
    z: &Tensor,
    rows: Rows,
    ema: Option<&EmaState>,
) -> Result<()> {
    let op = "vq reset";
    let (n, k, d) = dims(op, z, codebook)?;
    expect_codes(op, idle, k)?;
    let (rows, uniform) = match rows {
        Rows::Given(t) => (t, false),
        Rows::Uniform(t) => (t, true),
    };
    rows.expect_dtype(op, if uniform { DType::F32 } else { DType::U32 })?;
    rows.expect_shape(op, &[k])?;
    check_steps(z.engine(), op, d)?;
    if threshold == 0 {
        return Err(Error::bad(
            op,
            "a threshold of 0 steps would reset every code",
        ));
    }
    let p = Params {
        n: n as u32,
        k: k as u32,
        d: d as u32,
        threshold,
        ..Params::default()
    };
    let flags = [("UNIFORM", uniform)];
    // `rows` is a u32 view: uniforms are read as their bits (bitcast in the shader).
    let rows = Bind::read("rows", rows).words();
    if let Some(s) = ema {
        s.sums.expect_shape(op, codebook.shape())?;
        s.sizes.expect_shape(op, &[k])?;
        let tensors = [
            Bind::read("z", z),
            rows,
            Bind::read("idle_in", idle),
            Bind::write("ema_size", s.sizes),
            Bind::write("ema_sum", s.sums),
        ];
        per_item_with("vq_reset_ema", &flags, &tensors, p, k)?;
    }
    let tensors = [
        Bind::read("z", z),
        rows,
        Bind::write("idle", idle),
        Bind::write("codebook", codebook),
    ];
    per_item_with("vq_reset", &flags, &tensors, p, k)
}
