//! CPU twin of `shaders/kl.wgsl` (f64: the spec), randomised GPU-vs-CPU comparisons and
//! finite-difference gradient checks. Run with `cargo test --release kl`.

use crate::{
    Spec, assert_close, assert_matches_fd, assert_within, awkward, error_kind, fd_gradients, gpu,
    per_element, rng, sum_rows, uniform,
};
use latent::kernels::kl::{self, Weight};
use latent::{DType, Engine, Tensor};

// ---- CPU twin: one dimension of one row, as (value, magnitude) --------------------------------

/// z = μ + σ·ε, σ = exp(½ log σ²).
pub fn reparameterize(mu: f64, logvar: f64, eps: f64) -> Spec {
    let sd = (0.5 * logvar).exp();
    (mu + sd * eps, mu.abs() + (sd * eps).abs())
}

/// KL(N(μ, σ²) ‖ N(0, 1)) = −½ (1 + log σ² − μ² − σ²).
pub fn kl_std(mu: f64, logvar: f64) -> Spec {
    let var = logvar.exp();
    let value = -0.5 * (1.0 + logvar - mu * mu - var);
    (value, 0.5 * (1.0 + logvar.abs() + mu * mu + var))
}

/// (dμ, d log σ²) of Σ dz·z + w·KL(N(μ, σ²) ‖ N(0, 1)); dz = 0 or w = 0 leave one part.
pub fn gaussian_grads(mu: f64, logvar: f64, eps: f64, dz: f64, w: f64) -> [Spec; 2] {
    let sd = (0.5 * logvar).exp();
    let var = sd * sd;
    let (from_z, from_kl) = (dz * eps * sd, w * (var - 1.0));
    [
        (dz + w * mu, dz.abs() + (w * mu).abs()),
        (
            0.5 * (from_z + from_kl),
            0.5 * (from_z.abs() + w.abs() * (var + 1.0)),
        ),
    ]
}

/// KL(N(μq, σq²) ‖ N(μp, σp²)) = ½ (log σp² − log σq² + (σq² + (μq − μp)²)/σp² − 1).
pub fn kl_pair(mq: f64, lq: f64, mp: f64, lp: f64) -> Spec {
    let (ratio, q) = ((lq - lp).exp(), (mq - mp).powi(2) * (-lp).exp());
    let value = 0.5 * (lp - lq + ratio + q - 1.0);
    (value, 0.5 * ((lp - lq).abs() + ratio + q + 1.0))
}

/// (dμq, d log σq², dμp, d log σp²) of w·KL(q ‖ p).
pub fn kl_pair_grads(mq: f64, lq: f64, mp: f64, lp: f64, w: f64) -> [Spec; 4] {
    let ratio = (lq - lp).exp();
    let t = w * (mq - mp) * (-lp).exp();
    let q = t * (mq - mp);
    [
        (t, t.abs()),
        (0.5 * w * (ratio - 1.0), 0.5 * w.abs() * (ratio + 1.0)),
        (-t, t.abs()),
        (
            0.5 * (w * (1.0 - ratio) - q),
            0.5 * (w.abs() * (1.0 + ratio) + q.abs()),
        ),
    ]
}

/// The precision-weighted merge in the paper's own form (Sønderby et al. 2016, eq. 17–19), a
/// second oracle beside the shader's sigmoid form: precisions 1/σq², 1/σp² ->
/// (μ, log σ²) with σ² = 1/(1/σq² + 1/σp²), μ = (μq/σq² + μp/σp²)·σ².
pub fn merge(mq: f64, lq: f64, mp: f64, lp: f64) -> [Spec; 2] {
    let (pq, pp) = ((-lq).exp(), (-lp).exp());
    let var = 1.0 / (pq + pp);
    [
        ((mq * pq + mp * pp) * var, mq.abs() + mp.abs()),
        (var.ln(), lq.abs().min(lp.abs()) + 1.0),
    ]
}

// ---- shared by the row-kernel tests ---------------------------------------------------------

/// Shapes that include 1, primes, 784 (an MNIST row), 32 (the W1 latent), > 256 and the two lane
/// types (D % 4 == 0 loads vec4).
pub fn row_shapes(seed: u64) -> Vec<[usize; 2]> {
    let mut r = rng(seed);
    let mut shapes = vec![
        [1, 1],
        [1, 784],
        [128, 784],
        [128, 32],
        [3, 7],
        [257, 33],
        [2, 257],
    ];
    shapes.extend((0..4).map(|_| [awkward(&mut r, 300), awkward(&mut r, 300)]));
    shapes
}

/// Units of 2^-24 of the magnitude allowed: a few roundings, WGSL's exp bound (3 + 2|x| ulp,
/// |x| ≤ `exp_arg`) and a sum's chain of `chain` additions (Higham: γ_n ≈ n·2^-24 of Σ|t|).
pub fn ulps(exp_arg: f64, chain: usize) -> f64 {
    11.0 + 2.0 * exp_arg + chain as f64
}

/// The longest chain of f32 additions in a row sum of `d` elements (vec4 lanes when d % 4 == 0).
pub fn chain(d: usize) -> usize {
    if d.is_multiple_of(4) { d / 4 + 2 } else { d }
}

pub fn upload(e: &Engine, x: &[f32], shape: [usize; 2]) -> Tensor {
    Tensor::from_slice(e, x, &shape).expect("upload")
}

pub fn read(t: &Tensor) -> Vec<f32> {
    t.to_vec().expect("readback")
}

/// Σ_b w_b·Σ_d values of the `[B, D]` specs: the scalar whose gradient a backward computes.
pub fn weighted(specs: &[Spec], d: usize, w: &[f64]) -> f64 {
    sum_rows(specs, d).iter().zip(w).map(|(s, w)| w * s.0).sum()
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

// ---- tests ----------------------------------------------------------------------------------

/// Random `[B, D]` inputs of one shape (uploaded) and random row weights g in [−2, 2].
pub struct Case {
    pub shape: [usize; 2],
    pub x: Vec<Vec<f32>>,
    pub t: Vec<Tensor>,
    pub g: Vec<f32>,
    pub gt: Tensor,
}

/// One input per range, uniform in it.
pub fn case(e: &Engine, seed: u64, shape: [usize; 2], ranges: &[(f32, f32)]) -> Case {
    let mut r = rng(seed);
    let n = shape[0] * shape[1];
    let x: Vec<Vec<f32>> = ranges
        .iter()
        .map(|&(lo, hi)| uniform(&mut r, n, lo, hi))
        .collect();
    let t = x.iter().map(|v| upload(e, v, shape)).collect();
    let g = uniform(&mut r, shape[0], -2.0, 2.0);
    let gt = Tensor::from_slice(e, &g, &[shape[0]]).unwrap();
    Case { shape, x, t, g, gt }
}

/// μ, log σ² (within ±`logvar`), ε, dz, μp, log σp².
fn gaussians(e: &Engine, seed: u64, shape: [usize; 2], logvar: f32) -> Case {
    let (m, l) = ((-3.0, 3.0), (-logvar, logvar));
    case(e, seed, shape, &[m, l, m, (-1.0, 1.0), m, l])
}

/// Every entry point against the twin on one case; `exp_arg` bounds the exponents.
fn check_all(c: &Case, exp_arg: f64) {
    let [b, d] = c.shape;
    let (x, t) = (&c.x, &c.t);
    let what = |name: &str| format!("{name} [{b}, {d}]");
    let (el, sums) = (ulps(exp_arg, 0), ulps(exp_arg, chain(d)));
    let g = |row: usize| c.g[row] as f64;

    let [z] = per_element(&[&x[0], &x[1], &x[2]], d, |_, v| {
        [reparameterize(v[0], v[1], v[2])]
    });
    let [kl] = per_element(&[&x[0], &x[1]], d, |_, v| [kl_std(v[0], v[1])]);
    assert_within(
        &what("reparameterize"),
        &read(&kl::reparameterize(&t[0], &t[1], &t[2]).unwrap()),
        &z,
        el,
    );
    assert_within(
        &what("kl_std_normal"),
        &read(&kl::kl_std_normal(&t[0], &t[1]).unwrap()),
        &sum_rows(&kl, d),
        sums,
    );
    let (gz, gkl) = kl::reparameterize_kl(&t[0], &t[1], &t[2]).unwrap();
    assert_within(&what("fused z"), &read(&gz), &z, el);
    assert_within(&what("fused kl"), &read(&gkl), &sum_rows(&kl, d), sums);

    let grads = |dz: bool, w: &dyn Fn(usize) -> f64| {
        per_element(&[&x[0], &x[1], &x[2], &x[3]], d, |row, v| {
            gaussian_grads(v[0], v[1], v[2], if dz { v[3] } else { 0.0 }, w(row))
        })
    };
    let check2 = |name: &str, got: (Tensor, Tensor), want: [Vec<Spec>; 2]| {
        assert_within(&what(&format!("{name} dmu")), &read(&got.0), &want[0], el);
        assert_within(
            &what(&format!("{name} dlogvar")),
            &read(&got.1),
            &want[1],
            el,
        );
    };
    check2(
        "reparameterize_backward",
        kl::reparameterize_backward(&t[1], &t[2], &t[3]).unwrap(),
        grads(true, &|_| 0.0),
    );
    check2(
        "kl_std_normal_backward",
        kl::kl_std_normal_backward(&t[0], &t[1], &c.gt).unwrap(),
        grads(false, &g),
    );
    let fused = kl::reparameterize_kl_backward(&t[0], &t[1], &t[2], &t[3], Weight::PerRow(&c.gt));
    check2("fused backward per row", fused.unwrap(), grads(true, &g));
    let fused = kl::reparameterize_kl_backward(&t[0], &t[1], &t[2], &t[3], Weight::Scalar(0.75));
    check2(
        "fused backward scalar",
        fused.unwrap(),
        grads(true, &|_| 0.75),
    );

    let q = [&x[0][..], &x[1], &x[4], &x[5]];
    let [pair] = per_element(&q, d, |_, v| [kl_pair(v[0], v[1], v[2], v[3])]);
    let got = kl::kl_gaussians(&t[0], &t[1], &t[4], &t[5]).unwrap();
    assert_within(
        &what("kl_gaussians"),
        &read(&got),
        &sum_rows(&pair, d),
        sums,
    );
    let want = per_element(&q, d, |row, v| {
        kl_pair_grads(v[0], v[1], v[2], v[3], g(row))
    });
    let got = kl::kl_gaussians_backward(&t[0], &t[1], &t[4], &t[5], &c.gt).unwrap();
    for (k, (got, want)) in [got.0, got.1, got.2, got.3].iter().zip(&want).enumerate() {
        assert_within(
            &what(&format!("kl_gaussians_backward {k}")),
            &read(got),
            want,
            el,
        );
    }
}

#[test]
fn kl_kernels_match_cpu_on_random_shapes() {
    let e = gpu!();
    for (i, shape) in row_shapes(30).into_iter().enumerate() {
        check_all(&gaussians(e, 31 + i as u64, shape, 4.0), 8.0);
    }
}

#[test]
fn kl_kernels_stay_finite_and_match_cpu_at_logvar_plus_minus_30() {
    let e = gpu!();
    for shape in [[5, 12], [4, 7]] {
        let mut c = gaussians(e, 40, shape, 30.0);
        // Exactly ±30 on both sides, in every combination.
        for (i, v) in c.x[1].iter_mut().enumerate() {
            *v = if i % 2 == 0 { 30.0 } else { -30.0 };
        }
        for (i, v) in c.x[5].iter_mut().enumerate() {
            *v = if i % 4 < 2 { -30.0 } else { 30.0 };
        }
        c.t = c.x.iter().map(|v| upload(e, v, shape)).collect();
        let (z, kl) = kl::reparameterize_kl(&c.t[0], &c.t[1], &c.t[2]).unwrap();
        let pair = kl::kl_gaussians(&c.t[0], &c.t[1], &c.t[4], &c.t[5]).unwrap();
        for v in [read(&z), read(&kl), read(&pair)].concat() {
            assert!(v.is_finite(), "{v}");
        }
        // |log σq² − log σp²| reaches 60.
        check_all(&c, 60.0);
    }
}

/// Finite differences of `loss` (in f64 on the twin, a function of the inputs, D and the row
/// weights) against the GPU gradients w.r.t. inputs `wrt`, on two small shapes (f32 and vec4
/// lanes) of `make`'s inputs.
pub fn check_fd(
    name: &str,
    make: impl Fn(&Engine, [usize; 2]) -> Case,
    gpu: impl Fn(&Case) -> Vec<Tensor>,
    loss: impl Fn(&[Vec<f64>], usize, &[f64]) -> f64,
    wrt: &[usize],
) {
    let e = gpu!();
    for shape in [[3, 5], [2, 8]] {
        let c = make(e, shape);
        let inputs: Vec<Vec<f64>> = c.x.iter().map(|v| f64s(v)).collect();
        let w = f64s(&c.g);
        let fd = fd_gradients(|x| loss(x, shape[1], &w), &inputs);
        for (got, &k) in gpu(&c).iter().zip(wrt) {
            assert_matches_fd(&format!("{name} {shape:?} input {k}"), &read(got), &fd[k]);
        }
    }
}

fn moderate(e: &Engine, shape: [usize; 2]) -> Case {
    gaussians(e, 50, shape, 2.0)
}

/// Asserts that `weighted` is `unweighted` with row r scaled by `weights[r]`, exactly: weights
/// that are 0 or ± powers of two scale every rounding step exactly.
pub fn assert_weighted_rows(what: &str, weighted: &Tensor, unweighted: &Tensor, weights: &[f32]) {
    let d = unweighted.shape()[1];
    let want: Vec<f32> = read(unweighted)
        .iter()
        .enumerate()
        .map(|(j, &v)| weights[j / d] * v)
        .collect();
    assert_close(what, &read(weighted), &want, 0.0, 0.0);
}

/// The twin of the KL to N(0, I) as a function of all case inputs.
fn kl_std_loss(x: &[Vec<f64>], d: usize, w: &[f64]) -> f64 {
    let specs: Vec<Spec> = x[0]
        .iter()
        .zip(&x[1])
        .map(|(&m, &l)| kl_std(m, l))
        .collect();
    weighted(&specs, d, w)
}

/// Σ dz·z, z from the twin.
fn dz_dot_z(x: &[Vec<f64>]) -> f64 {
    (0..x[0].len())
        .map(|i| x[3][i] * reparameterize(x[0][i], x[1][i], x[2][i]).0)
        .sum()
}

#[test]
fn reparameterize_backward_matches_finite_differences() {
    let gpu = |c: &Case| {
        let (dmu, dlogvar) = kl::reparameterize_backward(&c.t[1], &c.t[2], &c.t[3]).unwrap();
        vec![dmu, dlogvar]
    };
    check_fd(
        "reparameterize_backward",
        moderate,
        gpu,
        |x, _, _| dz_dot_z(x),
        &[0, 1],
    );
}

#[test]
fn kl_std_normal_backward_matches_finite_differences() {
    let gpu = |c: &Case| {
        let (dmu, dlogvar) = kl::kl_std_normal_backward(&c.t[0], &c.t[1], &c.gt).unwrap();
        vec![dmu, dlogvar]
    };
    check_fd(
        "kl_std_normal_backward",
        moderate,
        gpu,
        kl_std_loss,
        &[0, 1],
    );
}

#[test]
fn fused_reparameterize_kl_backward_matches_finite_differences() {
    let gpu = |c: &Case| {
        let (dmu, dlogvar) = kl::reparameterize_kl_backward(
            &c.t[0],
            &c.t[1],
            &c.t[2],
            &c.t[3],
            Weight::PerRow(&c.gt),
        )
        .unwrap();
        vec![dmu, dlogvar]
    };
    check_fd(
        "fused backward",
        moderate,
        gpu,
        |x, d, w| dz_dot_z(x) + kl_std_loss(x, d, w),
        &[0, 1],
    );
}

#[test]
fn kl_gaussians_backward_matches_finite_differences() {
    let gpu = |c: &Case| {
        let (a, b, cc, d) =
            kl::kl_gaussians_backward(&c.t[0], &c.t[1], &c.t[4], &c.t[5], &c.gt).unwrap();
        vec![a, b, cc, d]
    };
    let loss = |x: &[Vec<f64>], d: usize, w: &[f64]| {
        let specs: Vec<Spec> = (0..x[0].len())
            .map(|i| kl_pair(x[0][i], x[1][i], x[4][i], x[5][i]))
            .collect();
        weighted(&specs, d, w)
    };
    check_fd("kl_gaussians_backward", moderate, gpu, loss, &[0, 1, 4, 5]);
}

/// The merge's two outputs against the twin on one case (μq, log σq² = inputs 0, 1; μp,
/// log σp² = inputs 4, 5).
fn check_merge(c: &Case, exp_arg: f64) {
    let [b, d] = c.shape;
    let q = [&c.x[0][..], &c.x[1], &c.x[4], &c.x[5]];
    let want = per_element(&q, d, |_, v| merge(v[0], v[1], v[2], v[3]));
    let (mu, logvar, w) = kl::precision_merge(&c.t[0], &c.t[1], &c.t[4], &c.t[5]).unwrap();
    let el = ulps(exp_arg, 0);
    assert_within(
        &format!("precision_merge mu [{b}, {d}]"),
        &read(&mu),
        &want[0],
        el,
    );
    assert_within(
        &format!("precision_merge logvar [{b}, {d}]"),
        &read(&logvar),
        &want[1],
        el,
    );
    assert!(
        read(&w).iter().all(|w| (0.0..=1.0).contains(w)),
        "w is a weight"
    );
}

#[test]
fn precision_merge_matches_the_papers_form_on_random_shapes() {
    let e = gpu!();
    for (i, shape) in row_shapes(60).into_iter().enumerate() {
        check_merge(&gaussians(e, 61 + i as u64, shape, 4.0), 8.0);
    }
}

#[test]
fn precision_merge_stays_finite_at_logvar_plus_minus_30() {
    let e = gpu!();
    for shape in [[5, 12], [4, 7]] {
        let mut c = gaussians(e, 70, shape, 30.0);
        for (i, v) in c.x[1].iter_mut().enumerate() {
            *v = if i % 2 == 0 { 30.0 } else { -30.0 };
        }
        for (i, v) in c.x[5].iter_mut().enumerate() {
            *v = if i % 4 < 2 { -30.0 } else { 30.0 };
        }
        c.t = c.x.iter().map(|v| upload(e, v, shape)).collect();
        check_merge(&c, 60.0);
    }
}

/// Σ dz·f(merge) over all elements, f picking output `k` (0: μ, 1: log σ²); dz is input 3.
fn merge_loss(k: usize) -> impl Fn(&[Vec<f64>], usize, &[f64]) -> f64 {
    move |x: &[Vec<f64>], _d: usize, _w: &[f64]| {
        (0..x[0].len())
            .map(|i| x[3][i] * merge(x[0][i], x[1][i], x[4][i], x[5][i])[k].0)
            .sum()
    }
}

#[test]
fn precision_merge_backwards_match_finite_differences() {
    let through_mean = |c: &Case| {
        let (_, _, w) = kl::precision_merge(&c.t[0], &c.t[1], &c.t[4], &c.t[5]).unwrap();
        let (a, b, cc, d) =
            kl::precision_merge_backward_mean(&c.t[0], &c.t[4], &w, &c.t[3]).unwrap();
        vec![a, b, cc, d]
    };
    check_fd(
        "precision_merge_backward_mean",
        moderate,
        through_mean,
        merge_loss(0),
        &[0, 1, 4, 5],
    );
    let through_logvar = |c: &Case| {
        let (_, _, w) = kl::precision_merge(&c.t[0], &c.t[1], &c.t[4], &c.t[5]).unwrap();
        let (a, b) = kl::precision_merge_backward_logvar(&w, &c.t[3]).unwrap();
        vec![a, b]
    };
    check_fd(
        "precision_merge_backward_logvar",
        moderate,
        through_logvar,
        merge_loss(1),
        &[1, 5],
    );
}

#[test]
fn kl_backwards_apply_each_rows_weight_to_that_row_only() {
    let e = gpu!();
    let shape = [4, 12];
    let c = gaussians(e, 60, shape, 2.0);
    let t = &c.t;
    // Row 0 must vanish and row r be scaled by its own weight.
    let weights = [0.0f32, 1.0, -2.0, 4.0];
    let w = Tensor::from_slice(e, &weights, &[4]).unwrap();
    let ones = Tensor::full(e, &[4], 1.0).unwrap();
    let std = |g| kl::kl_std_normal_backward(&t[0], &t[1], g).unwrap();
    let pair = |g| kl::kl_gaussians_backward(&t[0], &t[1], &t[4], &t[5], g).unwrap();
    assert_weighted_rows(
        "kl_std_normal_backward",
        &std(&w).1,
        &std(&ones).1,
        &weights,
    );
    assert_weighted_rows(
        "kl_gaussians_backward",
        &pair(&w).3,
        &pair(&ones).3,
        &weights,
    );
    // The fused pass weights only its KL part: with dz = 0 it is the KL backward.
    let zero = Tensor::zeros(e, &shape, DType::F32).unwrap();
    let fused =
        kl::reparameterize_kl_backward(&t[0], &t[1], &t[2], &zero, Weight::PerRow(&w)).unwrap();
    let alone = kl::kl_std_normal_backward(&t[0], &t[1], &w).unwrap();
    assert_eq!(read(&fused.0), read(&alone.0));
    assert_eq!(read(&fused.1), read(&alone.1));
}

#[test]
fn kl_rows_longer_than_one_piece_are_summed_across_pieces() {
    let e = gpu!();
    // 4,097 V units per row in both lane types: two pieces, added by reduce.wgsl.
    for shape in [[3, 4097], [2, 4 * 4097]] {
        check_all(&gaussians(e, 70, shape, 1.0), 2.0);
    }
}

#[test]
fn kl_covers_grids_above_65535_workgroups() {
    let e = gpu!();
    // One invocation per row, 64 per workgroup: 65,537 workgroups, folded into 2-D.
    let shape = [65_536 * 64 + 5, 1];
    let n = shape[0];
    let mu: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let logvar = vec![0.0f32; n];
    let got = read(&kl::kl_std_normal(&upload(e, &mu, shape), &upload(e, &logvar, shape)).unwrap());
    for (i, (&g, &m)) in got.iter().zip(&mu).enumerate() {
        // σ² = 1: KL = ½μ², exact for these small integers.
        assert_eq!(g, 0.5 * m * m, "row {i}");
    }
}

#[test]
fn kl_kernels_refuse_bad_shapes_and_dtypes_with_typed_errors() {
    let e = gpu!();
    let x = Tensor::zeros(e, &[4, 5], DType::F32).unwrap();
    let other = Tensor::zeros(e, &[4, 6], DType::F32).unwrap();
    let flat = Tensor::zeros(e, &[20], DType::F32).unwrap();
    let u = Tensor::zeros(e, &[4, 5], DType::U32).unwrap();
    let g = Tensor::zeros(e, &[4], DType::F32).unwrap();
    let g_bad = Tensor::zeros(e, &[5], DType::F32).unwrap();
    let g_u = Tensor::zeros(e, &[4], DType::U32).unwrap();
    let fused = |w| kl::reparameterize_kl_backward(&x, &x, &x, &x, w);
    let cases = [
        (
            error_kind(kl::reparameterize(&x, &x, &other)),
            "ShapeMismatch",
        ),
        (error_kind(kl::kl_std_normal(&flat, &flat)), "BadInput"),
        (error_kind(kl::kl_std_normal(&x, &u)), "DTypeMismatch"),
        (
            error_kind(kl::reparameterize_backward(&x, &u, &x)),
            "DTypeMismatch",
        ),
        (
            error_kind(kl::kl_std_normal_backward(&x, &x, &g_bad)),
            "ShapeMismatch",
        ),
        (
            error_kind(kl::kl_std_normal_backward(&x, &x, &g_u)),
            "DTypeMismatch",
        ),
        (
            error_kind(kl::reparameterize_kl(&x, &other, &x)),
            "ShapeMismatch",
        ),
        (error_kind(fused(Weight::PerRow(&g_bad))), "ShapeMismatch"),
        (
            error_kind(kl::kl_gaussians(&x, &x, &x, &other)),
            "ShapeMismatch",
        ),
        (
            error_kind(kl::kl_gaussians_backward(&x, &x, &x, &x, &g_bad)),
            "ShapeMismatch",
        ),
        // One tensor may stand for several inputs.
        (
            error_kind(kl::kl_gaussians_backward(&x, &x, &x, &x, &g)),
            "Ok",
        ),
        (error_kind(fused(Weight::Scalar(1.0))), "Ok"),
    ];
    for (i, (got, want)) in cases.iter().enumerate() {
        assert_eq!(got, want, "case {i}");
    }
}
