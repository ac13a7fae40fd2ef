//! CPU twin of `shaders/losses.wgsl` (f64: the spec), randomised GPU-vs-CPU comparisons and
//! finite-difference gradient checks. Run with `cargo test --release losses`.

use crate::kl::{
    Case, assert_weighted_rows, case, chain, check_fd, read, row_shapes, ulps, upload, weighted,
};
use crate::{Spec, assert_within, error_kind, gpu, per_element, rng, sum_rows};
use latent::kernels::losses as ls;
use latent::{DType, Engine, Tensor};
use rand::Rng;
use std::f64::consts::PI;

// ---- CPU twin: one element (or row) as (value, magnitude) -----------------------------------

/// BCE of logit l against target x: max(l, 0) − l·x + log(1 + exp(−|l|)). WGSL's log is good to
/// 2^-21 absolute on [1, 2], so that part counts 1 in the magnitude.
pub fn bce(l: f64, x: f64) -> Spec {
    let value = l.max(0.0) - l * x + (-l.abs()).exp().ln_1p();
    (value, l.max(0.0) + (l * x).abs() + 1.0)
}

/// w·∂BCE/∂l = w·(σ(l) − x).
pub fn bce_grad(l: f64, x: f64, w: f64) -> Spec {
    let s = 1.0 / (1.0 + (-l).exp());
    (w * (s - x), w.abs() * (s + x.abs()))
}

/// w·∂BCE/∂x = −w·l: the gradient w.r.t. a soft target x (whatever its value).
pub fn bce_target_grad(l: f64, w: f64) -> Spec {
    (-w * l, (w * l).abs())
}

/// −log N(x; μ, σ²) = ½ (log 2π + log σ² + (x − μ)²/σ²).
pub fn nll(x: f64, mu: f64, logvar: f64) -> Spec {
    let (log_2pi, q) = ((2.0 * PI).ln(), (x - mu).powi(2) * (-logvar).exp());
    (
        0.5 * (log_2pi + logvar + q),
        0.5 * (log_2pi + logvar.abs() + q),
    )
}

/// w·(∂/∂μ, ∂/∂log σ²) of the NLL: (w·(μ − x)/σ², ½w(1 − (x − μ)²/σ²)).
pub fn nll_grads(x: f64, mu: f64, logvar: f64, w: f64) -> [Spec; 2] {
    let t = w * (x - mu) * (-logvar).exp();
    let q = t * (x - mu);
    [(-t, t.abs()), (0.5 * (w - q), 0.5 * (w.abs() + q.abs()))]
}

/// Row max m and log Σ exp(v − m).
fn lse(row: &[f64]) -> (f64, f64) {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    (m, row.iter().map(|v| (v - m).exp()).sum::<f64>().ln())
}

/// logsumexp(row) − row[label]; NaN for a label outside the row.
pub fn cross_entropy(row: &[f64], label: usize) -> Spec {
    let Some(&v) = row.get(label) else {
        return (f64::NAN, 0.0);
    };
    let (m, log_sum) = lse(row);
    (m - v + log_sum, (m - v).abs() + log_sum + 1.0)
}

/// w·(softmax(row) − onehot(label)); all NaN for a label outside the row. exp's error grows with
/// |z| (z = v − logsumexp), hence the magnitude p·(1 + |z|).
pub fn cross_entropy_grads(row: &[f64], label: usize, w: f64) -> Vec<Spec> {
    if label >= row.len() {
        return vec![(f64::NAN, 0.0); row.len()];
    }
    let (m, log_sum) = lse(row);
    let hot = |j| (j == label) as u8 as f64;
    row.iter()
        .enumerate()
        .map(|(j, &v)| {
            let z = v - m - log_sum;
            let p = z.exp();
            (w * (p - hot(j)), w.abs() * (p * (1.0 + z.abs()) + hot(j)))
        })
        .collect()
}

// ---- tests ----------------------------------------------------------------------------------

/// Logits in ±`logit`, targets in [0, 1], x, μ, log σ² in ±`logvar`.
fn inputs(e: &Engine, seed: u64, shape: [usize; 2], logit: f32, logvar: f32) -> Case {
    let m = (-3.0, 3.0);
    case(
        e,
        seed,
        shape,
        &[(-logit, logit), (0.0, 1.0), m, m, (-logvar, logvar)],
    )
}

fn labels(seed: u64, rows: usize, classes: usize) -> Vec<u32> {
    let mut r = rng(seed);
    (0..rows)
        .map(|_| r.random_range(0..classes as u32))
        .collect()
}

fn f64_rows(x: &[f32], d: usize) -> Vec<Vec<f64>> {
    x.chunks(d)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect()
}

/// Every entry point against the twin; `exp_arg` bounds the exponents of BCE and the NLL.
fn check_all(c: &Case, labels: &[u32], exp_arg: f64) {
    let e = c.t[0].engine();
    let [b, d] = c.shape;
    let (x, t) = (&c.x, &c.t);
    let what = |name: &str| format!("{name} [{b}, {d}]");
    let (el, sums) = (ulps(exp_arg, 0), ulps(exp_arg, chain(d)));
    let g = |row: usize| c.g[row] as f64;

    let [want] = per_element(&[&x[0], &x[1]], d, |_, v| [bce(v[0], v[1])]);
    let got = ls::bce_with_logits(&t[0], &t[1]).unwrap();
    assert_within(
        &what("bce_with_logits"),
        &read(&got),
        &sum_rows(&want, d),
        sums,
    );
    let [want] = per_element(&[&x[0], &x[1]], d, |row, v| [bce_grad(v[0], v[1], g(row))]);
    let got = ls::bce_with_logits_backward(&t[0], &t[1], &c.gt).unwrap();
    assert_within(&what("bce_with_logits_backward"), &read(&got), &want, el);
    let [want_t] = per_element(&[&x[0]], d, |row, v| [bce_target_grad(v[0], g(row))]);
    let got = ls::bce_with_logits_backward_target(&t[0], &t[1], &c.gt).unwrap();
    assert_within(
        &what("bce_with_logits_backward_target"),
        &read(&got),
        &want_t,
        el,
    );
    let (dl, dt) = ls::bce_with_logits_backward_both(&t[0], &t[1], &c.gt).unwrap();
    assert_within(
        &what("bce_with_logits_backward_both dl"),
        &read(&dl),
        &want,
        el,
    );
    assert_within(
        &what("bce_with_logits_backward_both dt"),
        &read(&dt),
        &want_t,
        el,
    );

    let nll_in = [&x[2][..], &x[3], &x[4]];
    let [want] = per_element(&nll_in, d, |_, v| [nll(v[0], v[1], v[2])]);
    let got = ls::gaussian_nll(&t[2], &t[3], &t[4]).unwrap();
    assert_within(
        &what("gaussian_nll"),
        &read(&got),
        &sum_rows(&want, d),
        sums,
    );
    let want = per_element(&nll_in, d, |row, v| nll_grads(v[0], v[1], v[2], g(row)));
    let (dmu, dlogvar) = ls::gaussian_nll_backward(&t[2], &t[3], &t[4], &c.gt).unwrap();
    assert_within(
        &what("gaussian_nll_backward dmu"),
        &read(&dmu),
        &want[0],
        el,
    );
    assert_within(
        &what("gaussian_nll_backward dlogvar"),
        &read(&dlogvar),
        &want[1],
        el,
    );

    // Softmax: exp's error is inside the magnitudes; the sum's chain and log's 2^-21 remain.
    let rows = f64_rows(&x[0], d);
    let ce = 16.0 + 2.0 * chain(d) as f64;
    let lt = Tensor::from_slice(e, labels, &[b]).unwrap();
    let want: Vec<Spec> = rows
        .iter()
        .zip(labels)
        .map(|(r, &k)| cross_entropy(r, k as usize))
        .collect();
    let got = ls::cross_entropy_logits(&t[0], &lt).unwrap();
    assert_within(&what("cross_entropy_logits"), &read(&got), &want, ce);
    let want: Vec<Spec> = (0..b)
        .flat_map(|r| cross_entropy_grads(&rows[r], labels[r] as usize, g(r)))
        .collect();
    let got = ls::cross_entropy_logits_backward(&t[0], &lt, &c.gt).unwrap();
    assert_within(
        &what("cross_entropy_logits_backward"),
        &read(&got),
        &want,
        ce,
    );
}

#[test]
fn losses_match_cpu_on_random_shapes() {
    let e = gpu!();
    for (i, [b, d]) in row_shapes(80).into_iter().enumerate() {
        let seed = 81 + i as u64;
        check_all(&inputs(e, seed, [b, d], 8.0, 4.0), &labels(seed, b, d), 4.0);
    }
}

#[test]
fn losses_stay_finite_and_match_cpu_at_logits_100_and_logvar_30() {
    let e = gpu!();
    for shape in [[6, 12], [5, 10]] {
        let mut c = inputs(e, 90, shape, 100.0, 30.0);
        // Logits exactly ±100 against targets 0, 1 and ½; log σ² exactly ±30.
        for (i, v) in c.x[0].iter_mut().enumerate() {
            *v = if i % 2 == 0 { 100.0 } else { -100.0 };
        }
        for (i, v) in c.x[1].iter_mut().enumerate() {
            *v = [0.0, 1.0, 0.5][i / 2 % 3];
        }
        for (i, v) in c.x[4].iter_mut().enumerate() {
            *v = if i % 3 == 0 { 30.0 } else { -30.0 };
        }
        c.t = c.x.iter().map(|v| upload(e, v, shape)).collect();
        let lt = Tensor::from_slice(e, &labels(91, shape[0], shape[1]), &[shape[0]]).unwrap();
        let outputs = [
            ls::bce_with_logits(&c.t[0], &c.t[1]).unwrap(),
            ls::bce_with_logits_backward(&c.t[0], &c.t[1], &c.gt).unwrap(),
            ls::gaussian_nll(&c.t[2], &c.t[3], &c.t[4]).unwrap(),
            ls::gaussian_nll_backward(&c.t[2], &c.t[3], &c.t[4], &c.gt)
                .unwrap()
                .1,
            ls::cross_entropy_logits(&c.t[0], &lt).unwrap(),
            ls::cross_entropy_logits_backward(&c.t[0], &lt, &c.gt).unwrap(),
        ];
        for v in outputs.iter().flat_map(read) {
            assert!(v.is_finite(), "{v}");
        }
        // BCE's exponent is −|l| ≤ 0 (exp(−100) underflows harmlessly); the NLL's reaches 30.
        check_all(&c, &labels(91, shape[0], shape[1]), 30.0);
    }
}

fn moderate(e: &Engine, shape: [usize; 2]) -> Case {
    inputs(e, 100, shape, 4.0, 2.0)
}

#[test]
fn bce_with_logits_backward_matches_finite_differences() {
    let gpu = |c: &Case| vec![ls::bce_with_logits_backward(&c.t[0], &c.t[1], &c.gt).unwrap()];
    let loss = |x: &[Vec<f64>], d: usize, w: &[f64]| {
        let specs: Vec<Spec> = x[0].iter().zip(&x[1]).map(|(&l, &t)| bce(l, t)).collect();
        weighted(&specs, d, w)
    };
    check_fd("bce_with_logits_backward", moderate, gpu, loss, &[0]);
}

#[test]
fn bce_with_logits_gradients_wrt_soft_targets_match_finite_differences() {
    let loss = |x: &[Vec<f64>], d: usize, w: &[f64]| {
        let specs: Vec<Spec> = x[0].iter().zip(&x[1]).map(|(&l, &t)| bce(l, t)).collect();
        weighted(&specs, d, w)
    };
    let target =
        |c: &Case| vec![ls::bce_with_logits_backward_target(&c.t[0], &c.t[1], &c.gt).unwrap()];
    check_fd(
        "bce_with_logits_backward_target",
        moderate,
        target,
        loss,
        &[1],
    );
    let both = |c: &Case| {
        let (dl, dt) = ls::bce_with_logits_backward_both(&c.t[0], &c.t[1], &c.gt).unwrap();
        vec![dl, dt]
    };
    check_fd(
        "bce_with_logits_backward_both",
        moderate,
        both,
        loss,
        &[0, 1],
    );
}

#[test]
fn gaussian_nll_backward_matches_finite_differences() {
    let gpu = |c: &Case| {
        let (dmu, dlogvar) = ls::gaussian_nll_backward(&c.t[2], &c.t[3], &c.t[4], &c.gt).unwrap();
        vec![dmu, dlogvar]
    };
    let loss = |x: &[Vec<f64>], d: usize, w: &[f64]| {
        let specs: Vec<Spec> = (0..x[2].len())
            .map(|i| nll(x[2][i], x[3][i], x[4][i]))
            .collect();
        weighted(&specs, d, w)
    };
    check_fd("gaussian_nll_backward", moderate, gpu, loss, &[3, 4]);
}

#[test]
fn cross_entropy_logits_backward_matches_finite_differences() {
    // Labels 0, 1, 2 (fixed per row; the shapes have 2 or 3 rows of ≥ 5 classes).
    let gpu = |c: &Case| {
        let lt = Tensor::from_slice(c.t[0].engine(), &[0u32, 1, 2][..c.shape[0]], &[c.shape[0]]);
        vec![ls::cross_entropy_logits_backward(&c.t[0], &lt.unwrap(), &c.gt).unwrap()]
    };
    let loss = |x: &[Vec<f64>], d: usize, w: &[f64]| {
        let rows: Vec<Vec<f64>> = x[0].chunks(d).map(<[f64]>::to_vec).collect();
        rows.iter()
            .enumerate()
            .map(|(r, row)| w[r] * cross_entropy(row, r).0)
            .sum()
    };
    check_fd("cross_entropy_logits_backward", moderate, gpu, loss, &[0]);
}

#[test]
fn loss_backwards_apply_each_rows_weight_to_that_row_only() {
    let e = gpu!();
    let c = moderate(e, [4, 12]);
    let t = &c.t;
    let weights = [0.0f32, 1.0, -2.0, 4.0];
    let w = Tensor::from_slice(e, &weights, &[4]).unwrap();
    let ones = Tensor::full(e, &[4], 1.0).unwrap();
    let lt = Tensor::from_slice(e, &[3u32, 0, 11, 5], &[4]).unwrap();
    let bce = |g| ls::bce_with_logits_backward(&t[0], &t[1], g).unwrap();
    let bce_t = |g| ls::bce_with_logits_backward_target(&t[0], &t[1], g).unwrap();
    let nll = |g| ls::gaussian_nll_backward(&t[2], &t[3], &t[4], g).unwrap().1;
    let ce = |g| ls::cross_entropy_logits_backward(&t[0], &lt, g).unwrap();
    assert_weighted_rows("bce_with_logits_backward", &bce(&w), &bce(&ones), &weights);
    let (bce_target, t_w) = ("bce_with_logits_backward_target", bce_t(&w));
    assert_weighted_rows(bce_target, &t_w, &bce_t(&ones), &weights);
    assert_weighted_rows("gaussian_nll_backward", &nll(&w), &nll(&ones), &weights);
    assert_weighted_rows(
        "cross_entropy_logits_backward",
        &ce(&w),
        &ce(&ones),
        &weights,
    );
}

#[test]
fn cross_entropy_gives_nan_rows_for_labels_out_of_range() {
    let e = gpu!();
    for classes in [10, 12] {
        let c = moderate(e, [4, classes]);
        // Rows 1 and 3 have no such class: their loss and whole gradient row are NaN.
        let labels = [2u32, classes as u32, 0, u32::MAX];
        check_all(&c, &labels, 8.0);
        let lt = Tensor::from_slice(e, &labels, &[4]).unwrap();
        let loss = read(&ls::cross_entropy_logits(&c.t[0], &lt).unwrap());
        assert!(loss[1].is_nan() && loss[3].is_nan() && loss[0].is_finite() && loss[2].is_finite());
    }
}

#[test]
fn loss_rows_longer_than_one_piece_use_several_invocations() {
    let e = gpu!();
    // 4,097 V units per row in both lane types: BCE and the NLL sum two pieces; cross entropy
    // takes its row statistics from reduce.wgsl instead of computing them inline.
    for shape in [[3, 4097], [2, 4 * 4097]] {
        check_all(
            &inputs(e, 110, shape, 8.0, 2.0),
            &labels(111, shape[0], shape[1]),
            4.0,
        );
    }
}

#[test]
fn losses_refuse_bad_shapes_and_dtypes_with_typed_errors() {
    let e = gpu!();
    let x = Tensor::zeros(e, &[4, 5], DType::F32).unwrap();
    let other = Tensor::zeros(e, &[5, 4], DType::F32).unwrap();
    let flat = Tensor::zeros(e, &[20], DType::F32).unwrap();
    let u = Tensor::zeros(e, &[4, 5], DType::U32).unwrap();
    let g = Tensor::zeros(e, &[4], DType::F32).unwrap();
    let labels = Tensor::zeros(e, &[4], DType::U32).unwrap();
    let short = Tensor::zeros(e, &[3], DType::U32).unwrap();
    let cases = [
        (error_kind(ls::bce_with_logits(&x, &other)), "ShapeMismatch"),
        (error_kind(ls::bce_with_logits(&flat, &flat)), "BadInput"),
        (
            error_kind(ls::bce_with_logits_backward(&x, &u, &g)),
            "DTypeMismatch",
        ),
        (
            error_kind(ls::bce_with_logits_backward(&x, &x, &labels)),
            "DTypeMismatch",
        ),
        (
            error_kind(ls::bce_with_logits_backward_target(&x, &other, &g)),
            "ShapeMismatch",
        ),
        (
            error_kind(ls::bce_with_logits_backward_target(&x, &u, &g)),
            "DTypeMismatch",
        ),
        (
            error_kind(ls::bce_with_logits_backward_both(&x, &x, &flat)),
            "ShapeMismatch",
        ),
        (
            error_kind(ls::bce_with_logits_backward_both(&x, &x, &g)),
            "Ok",
        ),
        (
            error_kind(ls::gaussian_nll(&x, &x, &other)),
            "ShapeMismatch",
        ),
        (
            error_kind(ls::gaussian_nll_backward(&x, &x, &x, &flat)),
            "ShapeMismatch",
        ),
        (
            error_kind(ls::cross_entropy_logits(&x, &g)),
            "DTypeMismatch",
        ),
        (
            error_kind(ls::cross_entropy_logits(&x, &short)),
            "ShapeMismatch",
        ),
        (
            error_kind(ls::cross_entropy_logits(&u, &labels)),
            "DTypeMismatch",
        ),
        (
            error_kind(ls::cross_entropy_logits_backward(&x, &labels, &flat)),
            "ShapeMismatch",
        ),
        (
            error_kind(ls::cross_entropy_logits_backward(&x, &labels, &g)),
            "Ok",
        ),
    ];
    for (i, (got, want)) in cases.iter().enumerate() {
        assert_eq!(got, want, "case {i}");
    }
}
