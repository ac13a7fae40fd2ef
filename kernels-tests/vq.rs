//! CPU twin of the vq family (`shaders/vq.wgsl`, `shaders/vq/`): the nearest-code search in the
//! kernels' own f32 arithmetic (compared bit for bit), cluster sums, usage, gradients, EMA and
//! reset; finite-difference checks of the tape's VQ losses. Run with `cargo test --release vq`.

use crate::{
    assert_close, assert_matches_fd, awkward, error_kind, fd_gradients, gpu, portable_engine, rng,
    uniform,
};
use latent::kernels::vq::{self, Clusters, EmaState, Rows, Search};
use latent::nn::Module;
use latent::nn::vq::{Ema, VectorQuantizer, VqConfig, perplexity, usage};
use latent::tape::{Param, Tape};
use latent::{DType, Engine, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

// ---- CPU twin ---------------------------------------------------------------------------------

/// How the device rounds WGSL's `fma(a, b, c)`: WGSL lets an implementation round once (fused)
/// or twice (a·b, then + c); lavapipe rounds twice. The twin follows the device, told by
/// [`rounding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    Fused,
    Twice,
}

impl Rounding {
    pub fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        match self {
            Rounding::Fused => a.mul_add(b, c),
            Rounding::Twice => a * b + c,
        }
    }
}

/// The device's `fma` rounding: the one whose twin reproduces every entry of a random distance
/// matrix (half the entries tell the two apart); neither matching fails.
pub fn rounding(e: &Engine) -> Rounding {
    static ROUNDING: std::sync::OnceLock<Rounding> = std::sync::OnceLock::new();
    *ROUNDING.get_or_init(|| {
        let (n, k, d) = (16, 16, 64);
        let mut r = rng(60);
        let (z, codebook) = (
            uniform(&mut r, n * d, -2.0, 2.0),
            uniform(&mut r, k * d, -2.0, 2.0),
        );
        let got =
            read(&vq::distances(&upload(e, &z, &[n, d]), &upload(e, &codebook, &[k, d])).unwrap());
        let matches = |r: Rounding| {
            let want: Vec<f32> = z
                .chunks(d)
                .flat_map(|row| distances(r, row, &codebook, d))
                .collect();
            got == want
        };
        match (matches(Rounding::Fused), matches(Rounding::Twice)) {
            (true, false) => Rounding::Fused,
            (false, true) => Rounding::Twice,
            other => panic!(
                "the device's distances match neither rounding of fma (fused, twice: {other:?})"
            ),
        }
    })
}

/// Σ_d a_d·b_d as the kernels compute it: one multiply-add chain in dimension order from 0.
pub fn dot(r: Rounding, a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0f32, |s, (x, y)| r.fma(*x, *y, s))
}

/// The distances of `row` to every code: fma(−2, z·e, ‖e‖²) (‖z‖² left out; the last step rounds
/// once either way, −2·z·e being exact).
pub fn distances(r: Rounding, row: &[f32], codebook: &[f32], d: usize) -> Vec<f32> {
    codebook
        .chunks(d)
        .map(|e| r.fma(-2.0, dot(r, row, e), dot(r, e, e)))
        .collect()
}

/// The nearest code of every row: the first code with the smallest distance (strictly smaller
/// replaces, from +∞ and code 0).
pub fn nearest(r: Rounding, z: &[f32], codebook: &[f32], d: usize) -> Vec<u32> {
    z.chunks(d)
        .map(|row| {
            let mut best = (f32::INFINITY, 0u32);
            for (k, dist) in distances(r, row, codebook, d).into_iter().enumerate() {
                if dist < best.0 {
                    best = (dist, k as u32);
                }
            }
            best.1
        })
        .collect()
}

/// Σ_d (z − z_q)² per row, one multiply-add chain in order.
pub fn sq_err(r: Rounding, z: &[f32], codebook: &[f32], idx: &[u32], d: usize) -> Vec<f32> {
    z.chunks(d)
        .zip(idx)
        .map(|(row, &k)| {
            let e = &codebook[k as usize * d..][..d];
            row.iter()
                .zip(e)
                .fold(0.0f32, |s, (x, y)| r.fma(x - y, x - y, s))
        })
        .collect()
}

/// Per-code counts and sums of the rows, added in row order from 0 (codes ≥ k skipped).
pub fn cluster_sums(z: &[f32], idx: &[u32], k: usize, d: usize) -> (Vec<u32>, Vec<f32>) {
    let (mut counts, mut sums) = (vec![0u32; k], vec![0.0f32; k * d]);
    for (row, &c) in z.chunks(d).zip(idx) {
        if (c as usize) < k {
            counts[c as usize] += 1;
            for (s, x) in sums[c as usize * d..][..d].iter_mut().zip(row) {
                *s += x;
            }
        }
    }
    (counts, sums)
}

/// One EMA step in f64: N ← γN + (1−γ)n, m ← γm + (1−γ)Σz, e = m / ((N + ε)/(ΣN + Kε)·ΣN).
pub fn ema_step(
    sizes: &mut [f64],
    sums: &mut [f64],
    batch: &(Vec<u32>, Vec<f32>),
    decay: f64,
    eps: f64,
) -> Vec<f64> {
    let k = sizes.len();
    let d = sums.len() / k;
    for (s, &c) in sizes.iter_mut().zip(&batch.0) {
        *s = decay * *s + (1.0 - decay) * c as f64;
    }
    for (m, &x) in sums.iter_mut().zip(&batch.1) {
        *m = decay * *m + (1.0 - decay) * x as f64;
    }
    let n: f64 = sizes.iter().sum();
    (0..k * d)
        .map(|i| sums[i] / ((sizes[i / d] + eps) / (n + k as f64 * eps) * n))
        .collect()
}

// ---- helpers ----------------------------------------------------------------------------------

fn upload(e: &Engine, x: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(e, x, shape).expect("upload")
}

fn codes(e: &Engine, x: &[u32]) -> Tensor {
    Tensor::from_slice(e, x, &[x.len()]).expect("upload codes")
}

fn read(t: &Tensor) -> Vec<f32> {
    t.to_vec().expect("readback")
}

fn read_u32(t: &Tensor) -> Vec<u32> {
    t.to_vec().expect("readback")
}

/// A codebook [k, d] in [−1, 1) with deliberate ties: about a quarter of the codes repeat an
/// earlier code (equal distances to every row), and some are the negation of an earlier code
/// (equal distances to rows at the origin).
fn codebook_with_ties(r: &mut StdRng, k: usize, d: usize) -> Vec<f32> {
    let mut e = uniform(r, k * d, -1.0, 1.0);
    for c in 1..k {
        let src = r.random_range(0..c);
        match r.random_range(0..8) {
            0 | 1 => e.copy_within(src * d..(src + 1) * d, c * d),
            2 => {
                for i in 0..d {
                    e[c * d + i] = -e[src * d + i];
                }
            }
            _ => {}
        }
    }
    e
}

/// Rows [n, d] near the codes (a code plus small noise), some exactly a code and some zero, so
/// the nearest code is often a duplicated one.
fn rows_near(r: &mut StdRng, codebook: &[f32], n: usize, d: usize) -> Vec<f32> {
    let k = codebook.len() / d;
    let mut z = uniform(r, n * d, -0.1, 0.1);
    for row in z.chunks_mut(d) {
        let c = r.random_range(0..k);
        match r.random_range(0..6) {
            0 => row.copy_from_slice(&codebook[c * d..(c + 1) * d]),
            1 => row.fill(0.0),
            _ => {
                for (x, y) in row.iter_mut().zip(&codebook[c * d..]) {
                    *x += y;
                }
            }
        }
    }
    z
}

/// Asserts `gpu == cpu` element for element (bit for bit for floats), naming the first 8 misses.
fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, gpu: &[T], cpu: &[T]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: length");
    let diff = gpu.iter().zip(cpu).enumerate().filter(|(_, (g, c))| g != c);
    let first: Vec<String> = diff
        .take(8)
        .map(|(i, (g, c))| format!("[{i}] gpu {g:?} cpu {c:?}"))
        .collect();
    let n = gpu.iter().zip(cpu).filter(|(g, c)| g != c).count();
    assert!(
        first.is_empty(),
        "{what}: {n} of {} differ; first: {}",
        gpu.len(),
        first.join(", ")
    );
}

// ---- search -----------------------------------------------------------------------------------

/// Rows whose smallest distance is reached by more than one code (the ties a test exercises).
fn tied_rows(r: Rounding, z: &[f32], codebook: &[f32], d: usize) -> usize {
    z.chunks(d)
        .filter(|row| {
            let dist = distances(r, row, codebook, d);
            let min = dist.iter().copied().fold(f32::INFINITY, f32::min);
            dist.iter().filter(|&&x| x == min).count() > 1
        })
        .count()
}

/// Searches `z` [n, d] in `codebook` by `search` and checks indices, z_q and errors bit for bit.
fn check_search(e: &Engine, search: Search, z: &[f32], codebook: &[f32], n: usize, d: usize) {
    let k = codebook.len() / d;
    let what = format!("{search:?} N={n} K={k} D={d}");
    let (zt, et) = (upload(e, z, &[n, d]), upload(e, codebook, &[k, d]));
    let r = rounding(e);
    let want = nearest(r, z, codebook, d);
    let got = read_u32(&vq::nearest_with(&zt, &et, search).expect("nearest"));
    assert_same(&format!("{what}: indices"), &got, &want);
    let q = vq::quantize_with(&zt, &et, search).expect("quantize");
    assert_same(
        &format!("{what}: quantize's indices"),
        &read_u32(&q.indices),
        &want,
    );
    let zq: Vec<f32> = want
        .iter()
        .flat_map(|&c| codebook[c as usize * d..][..d].to_vec())
        .collect();
    assert_same(&format!("{what}: z_q"), &read(&q.z_q), &zq);
    let err = sq_err(r, z, codebook, &want, d);
    assert_same(&format!("{what}: squared errors"), &read(&q.sq_err), &err);
}

#[test]
fn vq_search_matches_the_twin_exactly_on_random_shapes_with_ties() {
    let e = gpu!();
    let mut r = rng(61);
    let mut shapes = vec![
        (1, 1, 1),
        (7, 3, 5),
        (128 * 49, 512, 64),
        (33, 17, 8),
        (1, 1, 256),
    ];
    // (70, 1000, 256) searches 4 blocks of 256 codes (one dispatch each), with ties across them.
    shapes.extend([(3, 4096, 16), (100, 31, 256), (65, 65, 12), (70, 1000, 256)]);
    for _ in 0..6 {
        shapes.push((
            awkward(&mut r, 300),
            awkward(&mut r, 300),
            awkward(&mut r, 80),
        ));
    }
    let (mut rows, mut tied) = (0, 0);
    for (n, k, d) in shapes {
        let codebook = codebook_with_ties(&mut r, k, d);
        let z = rows_near(&mut r, &codebook, n, d);
        for search in [Search::Fused, Search::Matmul] {
            check_search(e, search, &z, &codebook, n, d);
        }
        rows += n;
        tied += tied_rows(rounding(e), &z, &codebook, d);
    }
    // The duplicated and negated codes must really produce ties, or the test proves less.
    assert!(tied * 20 > rows, "only {tied} of {rows} rows had a tie");
}

#[test]
fn vq_distances_are_bit_identical_to_the_twins_formula() {
    // The matmul path's Z·(−2E)ᵀ + ‖e‖² must round exactly like fma(−2, z·e, ‖e‖²): every
    // entry, not just the argmin, so a change of rounding anywhere shows.
    let e = gpu!();
    let mut g = rng(62);
    for (n, k, d) in [(40, 33, 64), (9, 70, 13), (128, 16, 3)] {
        let (z, codebook) = (
            uniform(&mut g, n * d, -2.0, 2.0),
            uniform(&mut g, k * d, -2.0, 2.0),
        );
        let dist = vq::distances(&upload(e, &z, &[n, d]), &upload(e, &codebook, &[k, d])).unwrap();
        let r = rounding(e);
        let want: Vec<f32> = z
            .chunks(d)
            .flat_map(|row| distances(r, row, &codebook, d))
            .collect();
        assert_same(&format!("distances N={n} K={k} D={d}"), &read(&dist), &want);
    }
}

#[test]
fn vq_search_covers_more_than_65535_workgroups() {
    // 32 rows per workgroup: 2,097,153 rows need 65,537 workgroups (a folded grid).
    let e = gpu!();
    let (n, k, d) = (32 * 65_536 + 1, 5, 8);
    let mut r = rng(63);
    let codebook = codebook_with_ties(&mut r, k, d);
    let z = uniform(&mut r, n * d, -1.0, 1.0);
    check_search(e, Search::Fused, &z, &codebook, n, d);
}

#[test]
fn vq_search_refuses_bad_shapes_with_typed_errors() {
    let e = gpu!();
    let z = Tensor::zeros(e, &[4, 8], DType::F32).unwrap();
    let wrong_d = Tensor::zeros(e, &[3, 7], DType::F32).unwrap();
    let not_2d = Tensor::zeros(e, &[2, 2, 2], DType::F32).unwrap();
    let ints = Tensor::zeros(e, &[3, 8], DType::U32).unwrap();
    assert_eq!(error_kind(vq::nearest(&z, &wrong_d)), "ShapeMismatch");
    assert_eq!(error_kind(vq::quantize(&not_2d, &z)), "BadInput");
    assert_eq!(error_kind(vq::nearest(&z, &ints)), "DTypeMismatch");
    if e.max_loop_iterations().is_some() {
        // A code tile of 110,000 dimensions takes more than lavapipe's 65,535 loop steps.
        let long = Tensor::zeros(e, &[1, 110_000], DType::F32).unwrap();
        for search in [Search::Fused, Search::Matmul] {
            assert_eq!(
                error_kind(vq::nearest_with(&long, &long, search)),
                "BadInput"
            );
        }
    }
}

#[test]
fn vq_search_without_subgroups_takes_the_matmul_path_and_agrees() {
    let Some(e) = portable_engine() else { return };
    let mut r = rng(64);
    for (n, k, d) in [(50, 40, 16), (9, 7, 5), (1, 1, 3)] {
        let codebook = codebook_with_ties(&mut r, k, d);
        let z = rows_near(&mut r, &codebook, n, d);
        check_search(e, Search::Auto, &z, &codebook, n, d);
    }
    let one = Tensor::zeros(e, &[1, 8], DType::F32).unwrap();
    assert_eq!(
        error_kind(vq::nearest_with(&one, &one, Search::Fused)),
        "BadInput"
    );
}

// ---- cluster sums, histogram, usage -------------------------------------------------------------

/// Random codes in 0..k, a few of them k or more (which every kernel skips).
fn random_codes(r: &mut StdRng, n: usize, k: usize) -> Vec<u32> {
    (0..n)
        .map(|_| match r.random_range(0..20) {
            0 => (k + r.random_range(0..3)) as u32,
            _ => r.random_range(0..k) as u32,
        })
        .collect()
}

#[test]
fn vq_cluster_sums_match_the_twin_exactly() {
    // Sums in row order from 0, as the twin adds: exact. Shapes cover N < 4 and N % 4 != 0 (the
    // tail rows), D % 4 != 0 (scalar loads), D > 64 (several spans) and K > 32 (several groups).
    let e = gpu!();
    let mut r = rng(65);
    for (n, k, d) in [
        (1, 1, 1),
        (3, 5, 7),
        (130, 70, 64),
        (257, 33, 130),
        (999, 512, 12),
    ] {
        let z = uniform(&mut r, n * d, -1.0, 1.0);
        let idx = random_codes(&mut r, n, k);
        let (counts, sums) = cluster_sums(&z, &idx, k, d);
        let c = vq::cluster_sums(&upload(e, &z, &[n, d]), &codes(e, &idx), k).unwrap();
        let what = format!("cluster sums N={n} K={k} D={d}");
        assert_same(&format!("{what}: counts"), &read_u32(&c.counts), &counts);
        assert_same(&format!("{what}: sums"), &read(&c.sums), &sums);
    }
}

#[test]
fn vq_cluster_sums_take_several_passes_for_long_batches() {
    // lavapipe stops an invocation after 65,535 loop steps, and one code's rows are one loop: on
    // lavapipe 300,000 rows take five passes, each adding to the sums before it (so the sums are
    // within roundings of the twin's, not exact).
    let e = gpu!();
    let (n, k, d) = (300_000, 40, 3);
    let mut r = rng(66);
    let z = uniform(&mut r, n * d, 0.0, 1.0);
    let idx = random_codes(&mut r, n, k);
    let (counts, sums) = cluster_sums(&z, &idx, k, d);
    let c = vq::cluster_sums(&upload(e, &z, &[n, d]), &codes(e, &idx), k).unwrap();
    assert_same("long batch: counts", &read_u32(&c.counts), &counts);
    // Sums of ~7,000 values in [0, 1): each chain's error is below 7,000 roundings of 2^-24.
    assert_close("long batch: sums", &read(&c.sums), &sums, 0.0, 7e3 * 6e-8);
}

#[test]
fn vq_histogram_and_usage_follow_codes_across_steps() {
    let e = gpu!();
    let (k, mut r) = (37, rng(67));
    let epoch = Tensor::zeros(e, &[k], DType::U32).unwrap();
    let idle = Tensor::zeros(e, &[k], DType::U32).unwrap();
    let (mut want_epoch, mut want_idle) = (vec![0u32; k], vec![0u32; k]);
    for step in 0..3 {
        // Few rows, so that some codes go unused for a step or two.
        let idx = random_codes(&mut r, 20 + 7 * step, k);
        let counts = Tensor::zeros(e, &[k], DType::U32).unwrap();
        vq::histogram_into(&codes(e, &idx), &counts).unwrap();
        let (want, _) = cluster_sums(&vec![0.0; idx.len()], &idx, k, 1);
        assert_same("histogram", &read_u32(&counts), &want);
        vq::track_usage(&counts, &epoch, &idle).unwrap();
        for c in 0..k {
            want_epoch[c] += want[c];
            want_idle[c] = if want[c] > 0 { 0 } else { want_idle[c] + 1 };
        }
        assert_same("epoch counts", &read_u32(&epoch), &want_epoch);
        assert_same("steps unused", &read_u32(&idle), &want_idle);
    }
    // Histograms accumulate; u32 [B, H, W] code maps are counted like [N].
    let map = codes(e, &[1, 1, 2, 36]).reshape(&[1, 2, 2]).unwrap();
    let counts = Tensor::zeros(e, &[k], DType::U32).unwrap();
    vq::histogram_into(&map, &counts).unwrap();
    vq::histogram_into(&map, &counts).unwrap();
    let got = read_u32(&counts);
    assert_eq!(
        (got[1], got[2], got[36], got.iter().sum::<u32>()),
        (4, 2, 2, 8)
    );
    assert!((usage(&got) - 3.0 / k as f64).abs() < 1e-12);
    // Counts 4, 2, 2: H = −(½ ln ½ + 2·¼ ln ¼) = 1.5 ln 2.
    assert!((perplexity(&got) - (1.5 * 2f64.ln()).exp()).abs() < 1e-12);
}

// ---- gradients, EMA, reset ----------------------------------------------------------------------

#[test]
fn vq_loss_gradient_kernels_match_the_twin() {
    let e = gpu!();
    let mut r = rng(68);
    let (n, k, d) = (77, 19, 10);
    let codebook = uniform(&mut r, k * d, -1.0, 1.0);
    let z = uniform(&mut r, n * d, -1.0, 1.0);
    let idx = nearest(rounding(e), &z, &codebook, d);
    let zq: Vec<f32> = idx
        .iter()
        .flat_map(|&c| codebook[c as usize * d..][..d].to_vec())
        .collect();
    let (counts, sums) = cluster_sums(&z, &idx, k, d);
    let (g, scale) = (1.5f32, 0.3f32);
    let gt = upload(e, &[g], &[1]);
    let et = upload(e, &codebook, &[k, d]);
    let clusters = Clusters {
        counts: codes(e, &counts),
        sums: upload(e, &sums, &[k, d]),
    };
    let want: Vec<f32> = (0..k * d)
        .map(|i| g * scale * (counts[i / d] as f32 * codebook[i] - sums[i]))
        .collect();
    let out = Tensor::uninit(e, &[k, d], DType::F32).unwrap();
    vq::codebook_grad_into(&et, &clusters, &gt, scale, &out, false).unwrap();
    // A product and a difference of values of size ≤ N: a few roundings of 2^-24 relative.
    assert_close("codebook grad", &read(&out), &want, 1e-6, 1e-5);
    vq::codebook_grad_into(&et, &clusters, &gt, scale, &out, true).unwrap();
    let twice: Vec<f32> = want.iter().map(|w| 2.0 * w).collect();
    assert_close("codebook grad accumulated", &read(&out), &twice, 1e-6, 1e-5);

    let want: Vec<f32> = z
        .iter()
        .zip(&zq)
        .map(|(a, b)| g * scale * (a - b))
        .collect();
    let (zt, zqt) = (upload(e, &z, &[n, d]), upload(e, &zq, &[n, d]));
    let out = Tensor::uninit(e, &[n, d], DType::F32).unwrap();
    vq::commitment_grad_into(&zt, &zqt, &gt, scale, &out, false).unwrap();
    assert_close("commitment grad", &read(&out), &want, 1e-7, 1e-6);
    let bad = Tensor::zeros(e, &[2], DType::F32).unwrap();
    assert_eq!(
        error_kind(vq::commitment_grad_into(&zt, &zqt, &bad, 1.0, &out, false)),
        "ShapeMismatch"
    );
}

#[test]
fn vq_ema_updates_match_the_twin_over_several_steps() {
    let e = gpu!();
    let mut r = rng(69);
    let (n, k, d, decay, eps) = (300, 24, 9, 0.99, 1e-5);
    let init = uniform(&mut r, k * d, -1.0, 1.0);
    let codebook = upload(e, &init, &[k, d]);
    let (sizes, sums) = (
        Tensor::zeros(e, &[k], DType::F32).unwrap(),
        upload(e, &init, &[k, d]),
    );
    let state = EmaState {
        sizes: &sizes,
        sums: &sums,
    };
    let (mut want_sizes, mut want_sums) = (
        vec![0.0f64; k],
        init.iter().map(|&v| v as f64).collect::<Vec<_>>(),
    );
    for _ in 0..4 {
        let z = uniform(&mut r, n * d, -1.0, 1.0);
        let idx = random_codes(&mut r, n, k);
        let batch = cluster_sums(&z, &idx, k, d);
        let clusters = vq::cluster_sums(&upload(e, &z, &[n, d]), &codes(e, &idx), k).unwrap();
        vq::ema_update(&codebook, &state, &clusters, decay as f32, eps as f32).unwrap();
        let want = ema_step(&mut want_sizes, &mut want_sums, &batch, decay, eps);
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        // f32 recurrences of 4 steps against f64: a few ulps of the largest terms (sums ≤ 30).
        assert_close("ema sizes", &read(&sizes), &f32s(&want_sizes), 1e-5, 1e-5);
        assert_close("ema sums", &read(&sums), &f32s(&want_sums), 1e-5, 1e-5);
        assert_close("ema codebook", &read(&codebook), &f32s(&want), 1e-4, 1e-4);
    }
}

#[test]
fn vq_dead_codes_are_reset_from_the_given_rows() {
    let e = gpu!();
    let (n, k, d, threshold) = (10, 6, 5, 3);
    let mut r = rng(70);
    let z = uniform(&mut r, n * d, -1.0, 1.0);
    let zt = upload(e, &z, &[n, d]);
    let init = uniform(&mut r, k * d, -1.0, 1.0);
    let idle_host = [0u32, 3, 2, 7, 3, 1];
    // Rows given (99 is clamped to the last row), or picked as ⌊u·N⌋ from uniforms.
    let given = [9u32, 4, 0, 2, 99, 5];
    let draws = [0.5f32, 0.0, 0.99, 0.95, 0.31, 0.7];
    for uniform in [false, true] {
        let codebook = upload(e, &init, &[k, d]);
        let idle = codes(e, &idle_host);
        let (sizes, sums) = (upload(e, &[5.0; 6], &[k]), upload(e, &init, &[k, d]));
        let ema = EmaState {
            sizes: &sizes,
            sums: &sums,
        };
        let (gt, ut) = (codes(e, &given), upload(e, &draws, &[k]));
        let rows = if uniform {
            Rows::Uniform(&ut)
        } else {
            Rows::Given(&gt)
        };
        vq::reset_dead(&codebook, &idle, threshold, &zt, rows, Some(&ema)).unwrap();
        let (mut want_e, mut want_idle, mut want_sizes) =
            (init.clone(), idle_host.to_vec(), vec![5.0f32; 6]);
        for c in 0..k {
            if idle_host[c] >= threshold {
                let row = match uniform {
                    true => (draws[c] * n as f32) as usize,
                    false => (given[c] as usize).min(n - 1),
                };
                want_e[c * d..][..d].copy_from_slice(&z[row * d..][..d]);
                want_idle[c] = 0;
                want_sizes[c] = 1.0;
            }
        }
        assert_same("reset codebook", &read(&codebook), &want_e);
        assert_same("reset EMA sums", &read(&sums), &want_e);
        assert_same("reset EMA sizes", &read(&sizes), &want_sizes);
        assert_same("reset idle", &read_u32(&idle), &want_idle);
    }
    let (idle, rows) = (codes(e, &idle_host), codes(e, &given));
    let codebook = upload(e, &init, &[k, d]);
    let zero = vq::reset_dead(&codebook, &idle, 0, &zt, Rows::Given(&rows), None);
    assert_eq!(error_kind(zero), "BadInput");
    let floats = vq::reset_dead(&codebook, &idle, 1, &zt, Rows::Given(&zt), None);
    assert_eq!(error_kind(floats), "DTypeMismatch");
}

// ---- tape ---------------------------------------------------------------------------------------

/// Rows near codes with a clear nearest one: the second-nearest distance exceeds the nearest by
/// more than 0.05, so finite differences (steps ~1e-5) never change the assignment.
fn separated(r: &mut StdRng, n: usize, k: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let codebook = uniform(r, k * d, -1.0, 1.0);
    loop {
        let z = rows_near(r, &codebook, n, d);
        let clear = z.chunks(d).all(|row| {
            let mut dist = distances(Rounding::Fused, row, &codebook, d);
            dist.sort_by(f32::total_cmp);
            dist[1] - dist[0] > 0.05
        });
        if clear {
            return (z, codebook);
        }
    }
}

/// mean_{n,d} (z − e_{code n})² in f64 with codes fixed from the unperturbed inputs.
fn mse(z: &[f64], codebook: &[f64], idx: &[u32], d: usize) -> f64 {
    let total: f64 = z
        .chunks(d)
        .zip(idx)
        .flat_map(|(row, &c)| {
            row.iter()
                .zip(&codebook[c as usize * d..][..d])
                .map(|(a, b)| (a - b).powi(2))
        })
        .sum();
    total / z.len() as f64
}

#[test]
fn vq_losses_have_the_gradients_of_their_formulas() {
    let e = gpu!();
    let (n, k, d, beta) = (12, 5, 6, 0.25);
    let (z, codebook) = separated(&mut rng(71), n, k, d);
    let idx = nearest(rounding(e), &z, &codebook, d);
    let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let inputs = [f64s(&z), f64s(&codebook)];
    // Losses are means over N·D elements: check N·D·loss, whose gradients are of order 1.
    let nd = (n * d) as f64;
    let fd = fd_gradients(|x| nd * mse(&x[0], &x[1], &idx, d), &inputs);
    for part in ["codebook", "commitment", "both"] {
        let zp = Param::new("z", upload(e, &z, &[n, d])).unwrap();
        let ep = Param::new("e", upload(e, &codebook, &[k, d])).unwrap();
        let tape = Tape::new(e);
        let q = tape
            .param(&zp)
            .vector_quantize(&tape.param(&ep), beta)
            .unwrap();
        assert_same("tape indices", &read_u32(&q.indices), &idx);
        let loss = match part {
            "codebook" => q.codebook_loss.clone(),
            "commitment" => q.commitment_loss.clone(),
            _ => q.loss().unwrap(),
        };
        tape.backward(&loss.affine(nd as f32, 0.0).unwrap())
            .unwrap();
        // The stopped side gets no gradient at all.
        assert_eq!(zp.has_grad(), part != "codebook", "{part}: gradient to z_e");
        assert_eq!(
            ep.has_grad(),
            part != "commitment",
            "{part}: gradient to the codebook"
        );
        if ep.has_grad() {
            assert_matches_fd(&format!("{part}: d/de"), &read(ep.grad()), &fd[1]);
        }
        if zp.has_grad() {
            let want: Vec<f64> = fd[0].iter().map(|g| beta as f64 * g).collect();
            assert_matches_fd(&format!("{part}: d/dz"), &read(zp.grad()), &want);
        }
    }
    let (zp, ep) = (upload(e, &z, &[n, d]), upload(e, &codebook, &[k, d]));
    let tape = Tape::new(e);
    let q = tape
        .input(&zp)
        .vector_quantize(&tape.input(&ep), beta)
        .unwrap();
    let value = read(q.codebook_loss.value())[0] as f64;
    assert!(
        (value - mse(&inputs[0], &inputs[1], &idx, d)).abs() < 1e-6,
        "codebook loss value"
    );
    let value = read(q.commitment_loss.value())[0] as f64;
    assert!(
        (value - beta as f64 * mse(&inputs[0], &inputs[1], &idx, d)).abs() < 1e-6,
        "commitment loss value"
    );
}

#[test]
fn vq_z_q_passes_its_gradient_straight_through() {
    // d(Σ w ⊙ z_q)/dz_e = w exactly (the straight-through estimator); the codebook gets nothing.
    let e = gpu!();
    let (n, k, d) = (9, 4, 3);
    let (z, codebook) = separated(&mut rng(72), n, k, d);
    let w = uniform(&mut rng(73), n * d, -1.0, 1.0);
    let zp = Param::new("z", upload(e, &z, &[n, d])).unwrap();
    let ep = Param::new("e", upload(e, &codebook, &[k, d])).unwrap();
    let tape = Tape::new(e);
    let q = tape
        .param(&zp)
        .vector_quantize(&tape.param(&ep), 0.25)
        .unwrap();
    let loss = q
        .z_q
        .mul(&tape.input(&upload(e, &w, &[n, d])))
        .unwrap()
        .sum()
        .unwrap();
    tape.backward(&loss).unwrap();
    assert_same("straight-through gradient", &read(zp.grad()), &w);
    assert!(!ep.has_grad(), "the codebook learns only from its loss");
}

#[test]
fn transpose_passes_the_transposed_gradient_back() {
    let e = gpu!();
    let x = uniform(&mut rng(74), 2 * 3 * 5, -1.0, 1.0);
    let w = uniform(&mut rng(75), 2 * 5 * 3, -1.0, 1.0);
    let xp = Param::new("x", upload(e, &x, &[2, 3, 5])).unwrap();
    let tape = Tape::new(e);
    let y = tape.param(&xp).transpose().unwrap();
    assert_eq!(y.shape(), [2, 5, 3]);
    let loss = y
        .mul(&tape.input(&upload(e, &w, &[2, 5, 3])))
        .unwrap()
        .sum()
        .unwrap();
    tape.backward(&loss).unwrap();
    // d/dx[b, i, j] = w[b, j, i].
    let want: Vec<f32> = (0..30)
        .map(|f| w[(f / 15) * 15 + (f % 5) * 3 + (f / 5) % 3])
        .collect();
    assert_same("transpose gradient", &read(xp.grad()), &want);
}

// ---- the module ---------------------------------------------------------------------------------

/// `per` rows around each of `centres` well-apart points of D dimensions (±0.05 noise).
fn clustered(r: &mut StdRng, centres: &[f32], per: usize, d: usize) -> Vec<f32> {
    let mut z = Vec::new();
    for c in centres.chunks(d) {
        for _ in 0..per {
            z.extend(c.iter().map(|&v| v + r.random_range(-0.05..0.05)));
        }
    }
    z
}

#[test]
fn vector_quantizer_learns_clusters_by_ema_and_resets_dead_codes() {
    // 4 clusters far from the tiny initial codes: at first one code takes every row; the other
    // codes go unused, are reset onto rows of the batch after 2 steps, and EMA pulls codes to the
    // cluster means, so that every cluster ends up with a code of its own.
    let e = gpu!();
    let (d, k) = (8, 16);
    let mut r = rng(76);
    let centres = uniform(&mut r, 4 * d, -3.0, 3.0);
    let config = VqConfig {
        codes: k,
        dim: d,
        ema: Some(Ema::default()),
        reset_after: Some(2),
        ..VqConfig::default()
    };
    let vq = VectorQuantizer::new(e, "vq", config).unwrap();
    assert!(
        vq.params().is_empty(),
        "an EMA codebook is no optimizer's parameter"
    );
    for _ in 0..30 {
        let x = clustered(&mut r, &centres, 25, d);
        let tape = Tape::new(e);
        let out = vq.forward(&tape.input(&upload(e, &x, &[100, d]))).unwrap();
        assert_eq!(out.indices.shape(), [100]);
    }
    let stats = vq.epoch_stats().unwrap();
    assert_eq!(
        stats.counts.iter().sum::<u32>(),
        30 * 100,
        "every row counted once"
    );
    // Test rows: each nearest code lies within the cluster's noise of its centre.
    vq.set_training(false);
    let x = clustered(&mut r, &centres, 5, d);
    let tape = Tape::no_grad(e);
    let out = vq.forward(&tape.input(&upload(e, &x, &[20, d]))).unwrap();
    let (zq, idx) = (read(out.z_q.value()), read_u32(&out.indices));
    for (i, row) in zq.chunks(d).enumerate() {
        let centre = &centres[(i / 5) * d..][..d];
        let far = row
            .iter()
            .zip(centre)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            far < 0.1,
            "row {i}: its code is {far} from the cluster centre"
        );
    }
    let distinct: std::collections::HashSet<u32> = idx.iter().copied().collect();
    assert!(
        distinct.len() >= 4,
        "each cluster has its own code: {idx:?}"
    );
    assert!(
        stats.usage > 4.0 / k as f64 && stats.perplexity > 2.0,
        "{stats:?}"
    );
}

#[test]
fn vector_quantizer_on_feature_maps_trains_its_codebook_by_gradient() {
    let e = gpu!();
    let (b, d, h, w) = (2, 4, 3, 5);
    let config = VqConfig {
        codes: 7,
        dim: d,
        seed: 3,
        ..VqConfig::default()
    };
    let vq = VectorQuantizer::new(e, "vq", config).unwrap();
    assert_eq!(vq.params().len(), 1);
    let x = uniform(&mut rng(77), b * d * h * w, -0.2, 0.2);
    let xp = Param::new("x", upload(e, &x, &[b, d, h, w])).unwrap();
    let tape = Tape::new(e);
    let out = vq.forward(&tape.param(&xp)).unwrap();
    assert_eq!(
        (out.z_q.shape(), out.indices.shape()),
        (&[b, d, h, w][..], &[b, h, w][..])
    );
    // Pixel (bi, y, x) of z_q holds, along its channels, the code its index names.
    let (zq, idx) = (read(out.z_q.value()), read_u32(&out.indices));
    let codebook = read(vq.codebook.value());
    for (p, &c) in idx.iter().enumerate() {
        let (bi, hw) = (p / (h * w), p % (h * w));
        for ch in 0..d {
            assert_eq!(
                zq[(bi * d + ch) * h * w + hw],
                codebook[c as usize * d + ch]
            );
        }
    }
    let z_rows: Vec<f32> = (0..b * h * w)
        .flat_map(|p| (0..d).map(move |ch| (p / (h * w), ch, p % (h * w))))
        .map(|(bi, ch, hw)| x[(bi * d + ch) * h * w + hw])
        .collect();
    assert_same(
        "feature-map indices",
        &idx,
        &nearest(rounding(e), &z_rows, &codebook, d),
    );
    tape.backward(&out.loss).unwrap();
    assert!(
        vq.codebook.has_grad() && xp.has_grad(),
        "both sides of the VQ loss train"
    );
    let bad = tape.input(&Tensor::zeros(e, &[3, 5], DType::F32).unwrap());
    assert_eq!(error_kind(vq.forward(&bad)), "ShapeMismatch");
}
