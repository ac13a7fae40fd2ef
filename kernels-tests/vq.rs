//! CPU twin of the vq family (`shaders/vq.wgsl`, `shaders/vq/`): the nearest-code search in the
//! kernels' own f32 arithmetic (compared bit for bit), cluster sums, usage, gradients, EMA and
//! reset; finite-difference checks of the tape's VQ losses. Run with `cargo test --release vq`.

use crate::{awkward, error_kind, gpu, rng, uniform};
use latent::kernels::vq::{self, Search};
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
    shapes.extend([(3, 4096, 16), (100, 31, 256), (65, 65, 12)]);
    for _ in 0..6 {
        shapes.push((
            awkward(&mut r, 300),
            awkward(&mut r, 300),
            awkward(&mut r, 80),
        ));
    }
    for (n, k, d) in shapes {
        let codebook = codebook_with_ties(&mut r, k, d);
        let z = rows_near(&mut r, &codebook, n, d);
        for search in [Search::Fused, Search::Matmul] {
            check_search(e, search, &z, &codebook, n, d);
        }
    }
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
        // 128 code tiles × 513 steps of 8 dimensions exceed lavapipe's 65,535 loop steps.
        let big = Tensor::zeros(e, &[2048, 4096], DType::F32).unwrap();
        let row = Tensor::zeros(e, &[1, 4096], DType::F32).unwrap();
        assert_eq!(
            error_kind(vq::nearest_with(&row, &big, Search::Fused)),
            "BadInput"
        );
    }
}
