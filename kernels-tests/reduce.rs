//! CPU twin of `shaders/reduce.wgsl` (f64 accumulation: the spec) and GPU-vs-CPU comparisons.
//! Run with `cargo test --release reduce`.

use crate::{assert_close, awkward, error_kind, gpu, rng, uniform};
use latent::kernels::reduce::{self as rd, Reduce};
use latent::{DType, Error, Tensor};
use rand::Rng;

// ---- CPU twin -------------------------------------------------------------------------------

/// `op` over `values`, accumulated in f64.
pub fn cpu_fold(op: Reduce, values: impl Iterator<Item = f32>) -> f64 {
    let (mut sum, mut max, mut n) = (0.0f64, f64::NEG_INFINITY, 0usize);
    for v in values {
        sum += v as f64;
        max = max.max(v as f64);
        n += 1;
    }
    match op {
        Reduce::Sum => sum,
        Reduce::Mean => sum / n as f64,
        Reduce::Max => max,
    }
}

/// `log Σ exp(v)`, max-shifted; an infinite max is the answer (−inf: every term is 0).
pub fn cpu_logsumexp(row: &[f32]) -> f64 {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    if m.is_infinite() {
        return m;
    }
    m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

/// `op` over each row of `x` viewed as `[rows, cols]`.
pub fn cpu_reduce_last(op: Reduce, x: &[f32], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .map(|row| cpu_fold(op, row.iter().copied()))
        .collect()
}

/// `op` over each column of `x` viewed as `[rows, cols]`.
pub fn cpu_reduce_first(op: Reduce, x: &[f32], cols: usize) -> Vec<f64> {
    (0..cols)
        .map(|c| cpu_fold(op, x.iter().skip(c).step_by(cols).copied()))
        .collect()
}

// ---- tests ----------------------------------------------------------------------------------

/// Higham's bound on an f32 sum is γ_k·Σ|x| ≈ k·u·Σ|x| with u = 2^-24 and k the longest chain of
/// roundings any element goes through. A pass adds ≤ 32 elements into a block and ≤ 128 blocks
/// into a total (k ≤ 160 per pass); up to 2^36 elements take ≤ 3 passes, plus one rounding for
/// a mean: k ≤ 481, γ_k ≤ 2.9e-5. So 3e-5·Σ|x| is a guaranteed bound, not a statistical one.
const SUM_RTOL: f32 = 3e-5;

/// Compares sums scaled by Σ|x| of their run (so a sum that cancels to near zero is judged by
/// the size of what was added, as the bound says); max must be exact.
fn assert_reduced(what: &str, op: Reduce, gpu: &[f32], want: &[f64], abs: &[f64]) {
    if op == Reduce::Max {
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        return assert_close(what, gpu, &want, 0.0, 0.0);
    }
    let scale = |v: f64, a: f64| (v / a.max(f64::MIN_POSITIVE)) as f32;
    let g: Vec<f32> = gpu
        .iter()
        .zip(abs)
        .map(|(&v, &a)| scale(v as f64, a))
        .collect();
    let w: Vec<f32> = want.iter().zip(abs).map(|(&v, &a)| scale(v, a)).collect();
    assert_close(what, &g, &w, SUM_RTOL, 0.0);
}

/// Shapes with awkward last/first axes: 1, primes, around the 64-invocation workgroup, around
/// the 4,096-element pieces, tall-and-thin, short-and-wide, and a rank-3 case.
pub fn random_shapes(seed: u64) -> Vec<Vec<usize>> {
    let mut r = rng(seed);
    let mut shapes = vec![
        vec![1],
        vec![65],
        vec![1, 1],
        vec![5, 1],
        vec![20_011, 3],
        vec![3, 20_011],
        vec![4099, 65],
        vec![4097, 2],
        vec![2, 4096],
        vec![2, 3, 257],
        vec![70_001],
    ];
    for _ in 0..10 {
        shapes.push(vec![awkward(&mut r, 400), awkward(&mut r, 400)]);
    }
    shapes
}

/// Every `Reduce` over the first or the last axis against the twin on the random shapes.
fn axis_matches_cpu(first: bool, seed: u64) {
    let e = gpu!();
    for (i, shape) in random_shapes(seed).iter().enumerate() {
        let x = uniform(
            &mut rng(seed * 100 + i as u64),
            shape.iter().product(),
            -2.0,
            2.0,
        );
        let t = Tensor::from_slice(e, &x, shape).unwrap();
        let axis = if first { 0 } else { shape.len() - 1 };
        let cols = if first {
            x.len() / shape[0]
        } else {
            shape[axis]
        };
        let cpu = |op, v: &[f32]| match first {
            true => cpu_reduce_first(op, v, cols),
            false => cpu_reduce_last(op, v, cols),
        };
        let mut want_shape = shape.clone();
        want_shape.remove(axis);
        if want_shape.is_empty() {
            want_shape.push(1);
        }
        let abs_x: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        for op in Reduce::ALL {
            let out = match first {
                true => rd::reduce_first(op, &t),
                false => rd::reduce_last(op, &t),
            };
            let out = out.unwrap();
            assert_eq!(out.shape(), want_shape);
            // Σ|x| of each run bounds a sum's rounding (mean of |x| a mean's): see SUM_RTOL.
            let abs = cpu(if op == Reduce::Mean { op } else { Reduce::Sum }, &abs_x);
            let what = format!("{op:?} {shape:?}");
            assert_reduced(&what, op, &out.to_vec().unwrap(), &cpu(op, &x), &abs);
        }
    }
}

#[test]
fn reduce_last_matches_cpu_on_random_shapes() {
    axis_matches_cpu(false, 10);
}

#[test]
fn reduce_first_matches_cpu_on_random_shapes() {
    // (The vec4 path, cols % 4 == 0 and rows ≤ 4,096, is compared with the scalar one below.)
    // 70,001 rows of one column and 20,011 rows of three take two passes of 4,096-row chunks.
    axis_matches_cpu(true, 11);
}

/// The first-axis path four columns at a time (cols % 4 == 0, rows ≤ 4,096) gives the scalar
/// path's results bit for bit: the same matrix with one more column goes the scalar way.
#[test]
fn first_axis_in_vec4_columns_equals_the_scalar_path_bit_for_bit() {
    let e = gpu!();
    for (i, [rows, cols]) in [[128, 512], [7, 12], [1, 4], [33, 64], [4096, 8], [300, 784]]
        .into_iter()
        .enumerate()
    {
        let x = uniform(&mut rng(900 + i as u64), rows * cols, -2.0, 2.0);
        let padded: Vec<f32> = x
            .chunks(cols)
            .flat_map(|row| row.iter().copied().chain([7.0]))
            .collect();
        let t = Tensor::from_slice(e, &x, &[rows, cols]).unwrap();
        let tp = Tensor::from_slice(e, &padded, &[rows, cols + 1]).unwrap();
        for op in Reduce::ALL {
            let wide = rd::reduce_first(op, &t).unwrap().to_vec::<f32>().unwrap();
            let scalar = rd::reduce_first(op, &tp).unwrap().to_vec::<f32>().unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&wide),
                bits(&scalar[..cols]),
                "{op:?} [{rows}, {cols}]"
            );
            let want = cpu_reduce_first(op, &x, cols);
            let abs_x: Vec<f32> = x.iter().map(|v| v.abs()).collect();
            let abs_op = if op == Reduce::Mean { op } else { Reduce::Sum };
            let abs = cpu_reduce_first(abs_op, &abs_x, cols);
            assert_reduced(&format!("{op:?} [{rows}, {cols}]"), op, &wide, &want, &abs);
        }
    }
}

/// The fused loss `mean(a) + w·mean(b)` and its two means equal the separate reductions bit
/// for bit (same summation order, same scale), and its backward is (g/|a|, g·w/|b|); sizes
/// from 1 to 4,096 and unequal, weights 0, 1 and β-like; above 4,096 a typed error.
#[test]
fn mean_pair_equals_the_separate_means_and_its_backward_is_the_scaled_gradient() {
    let e = gpu!();
    for (i, (na, nb, w)) in [
        (1, 1, 1.0f32),
        (128, 128, 0.37),
        (5, 77, 0.0),
        (4096, 33, 20.0),
    ]
    .into_iter()
    .enumerate()
    {
        let a = uniform(&mut rng(950 + i as u64), na, 0.0, 600.0);
        let b = uniform(&mut rng(960 + i as u64), nb, 0.0, 30.0);
        let (ta, tb) = (
            Tensor::from_slice(e, &a, &[na]).unwrap(),
            Tensor::from_slice(e, &b, &[nb]).unwrap(),
        );
        let [loss, ma, mb] = rd::mean_pair(&ta, &tb, w).unwrap();
        let one = |t: &Tensor| t.to_vec::<f32>().unwrap()[0];
        let sum = |t: &Tensor| one(&rd::sum_all(t).unwrap());
        let (want_a, want_b) = (sum(&ta) * (1.0 / na as f32), sum(&tb) * (1.0 / nb as f32));
        let what = format!("|a| {na}, |b| {nb}, w {w}");
        assert_eq!(one(&ma).to_bits(), want_a.to_bits(), "mean(a) {what}");
        assert_eq!(one(&mb).to_bits(), want_b.to_bits(), "mean(b) {what}");
        // One product and one sum, which a device may fuse into an FMA: a rounding or two.
        let want = want_a + w * want_b;
        let tol = 2.0 * f32::EPSILON * (want_a.abs() + (w * want_b).abs());
        assert!(
            (one(&loss) - want).abs() <= tol,
            "loss {what}: {} vs {want}",
            one(&loss)
        );
        let g = Tensor::from_slice(e, &[1.5f32], &[1]).unwrap();
        let [da, db] = rd::mean_pair_backward(&g, &ta, &tb, w).unwrap();
        assert!(
            da.to_vec::<f32>()
                .unwrap()
                .iter()
                .all(|&v| v == 1.5 * (1.0 / na as f32))
        );
        let want_db = 1.5 * w * (1.0 / nb as f32);
        assert!(
            db.to_vec::<f32>().unwrap().iter().all(|&v| v == want_db),
            "db {what}"
        );
    }
    let long = Tensor::zeros(e, &[4097], latent::DType::F32).unwrap();
    let short = Tensor::zeros(e, &[3], latent::DType::F32).unwrap();
    assert_eq!(error_kind(rd::mean_pair(&long, &short, 1.0)), "BadInput");
    assert_eq!(error_kind(rd::mean_pair(&short, &long, 1.0)), "BadInput");
}

#[test]
fn sums_over_a_million_elements_stay_within_the_f64_bound() {
    let e = gpu!();
    // All-positive data is the hard case for f32: every rounding pushes the same way.
    let n = 1_000_003;
    let x = uniform(&mut rng(12), 2 * n, 0.0, 1.0);
    let rows = Tensor::from_slice(e, &x, &[2, n]).unwrap();
    let want = cpu_reduce_last(Reduce::Sum, &x, n);
    let got = rd::reduce_last(Reduce::Sum, &rows)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_reduced("last axis, 2 x 1e6", Reduce::Sum, &got, &want, &want);
    let cols = Tensor::from_slice(e, &x, &[n, 2]).unwrap();
    let want = cpu_reduce_first(Reduce::Sum, &x, 2);
    let got = rd::reduce_first(Reduce::Sum, &cols)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_reduced("first axis, 1e6 x 2", Reduce::Sum, &got, &want, &want);
}

#[test]
fn sum_all_matches_f64_on_random_sizes_and_17m_elements() {
    let e = gpu!();
    let mut r = rng(13);
    let mut sizes = vec![1, 7, 64, 4095, 4096, 4097, 4096 * 4096 + 1];
    sizes.extend((0..4).map(|_| r.random_range(1..300_000)));
    // 17 M elements: three passes (4,151 pieces, then 2, then 1), as 4096² + 1 does.
    sizes.push(17_000_000);
    for n in sizes {
        let x = uniform(&mut r, n, -1.0, 3.0);
        let t = Tensor::from_slice(e, &x, &[n]).unwrap();
        let got = rd::sum_all(&t).unwrap();
        assert_eq!(got.shape(), [1]);
        let want = cpu_fold(Reduce::Sum, x.iter().copied());
        let abs = cpu_fold(Reduce::Sum, x.iter().map(|v| v.abs()));
        assert_reduced(
            &format!("sum_all {n}"),
            Reduce::Sum,
            &got.to_vec().unwrap(),
            &[want],
            &[abs],
        );
    }
}

#[test]
fn sums_of_small_integers_are_exact_so_every_element_counts_once() {
    let e = gpu!();
    // Integers in [-3, 3]: every partial sum stays far below 2^24, so f32 adds exactly and a
    // dropped or repeated element shows even in 17 M (which the Σ|x| bound would hide).
    let ints = |n: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7919) % 7) as f32 - 3.0).collect() };
    let exact = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|v| v as f32).collect() };
    let n = 1_000_003;
    let x = ints(2 * n);
    let t = Tensor::from_slice(e, &x, &[2, n]).unwrap();
    let got = rd::reduce_last(Reduce::Sum, &t)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_close(
        "last axis",
        &got,
        &exact(cpu_reduce_last(Reduce::Sum, &x, n)),
        0.0,
        0.0,
    );
    let t = Tensor::from_slice(e, &x, &[n, 2]).unwrap();
    let got = rd::reduce_first(Reduce::Sum, &t)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_close(
        "first axis",
        &got,
        &exact(cpu_reduce_first(Reduce::Sum, &x, 2)),
        0.0,
        0.0,
    );
    let x = ints(17_000_003);
    let t = Tensor::from_slice(e, &x, &[x.len()]).unwrap();
    let got = rd::sum_all(&t).unwrap().to_vec::<f32>().unwrap();
    assert_close(
        "sum_all",
        &got,
        &[cpu_fold(Reduce::Sum, x.into_iter()) as f32],
        0.0,
        0.0,
    );
}

#[test]
fn reductions_fold_grids_above_65535_workgroups() {
    let e = gpu!();
    // One invocation per run, 64 per workgroup: 4.3 M runs need 67,200 workgroups.
    let runs = 64 * 67_200 - 5;
    let x: Vec<f32> = (0..2 * runs).map(|i| (i % 1001) as f32).collect();
    let wide = Tensor::from_slice(e, &x, &[2, runs]).unwrap();
    let got = rd::reduce_first(Reduce::Max, &wide)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = cpu_reduce_first(Reduce::Max, &x, runs)
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_close("reduce_first [2, 4.3M]", &got, &want, 0.0, 0.0);
    let tall = Tensor::from_slice(e, &x, &[runs, 2]).unwrap();
    let got = rd::reduce_last(Reduce::Sum, &tall)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = cpu_reduce_last(Reduce::Sum, &x, 2)
        .iter()
        .map(|&v| v as f32)
        .collect();
    // Sums of two integers below 2^24 are exact.
    assert_close("reduce_last [4.3M, 2]", &got, &want, 0.0, 0.0);
}

#[test]
fn logsumexp_last_matches_cpu_on_random_shapes() {
    let e = gpu!();
    for (i, shape) in random_shapes(14).iter().enumerate() {
        let x: Vec<f32> = uniform(
            &mut rng(200 + i as u64),
            shape.iter().product(),
            -30.0,
            30.0,
        );
        let t = Tensor::from_slice(e, &x, shape).unwrap();
        let got = rd::logsumexp_last(&t).unwrap().to_vec::<f32>().unwrap();
        let want: Vec<f32> = x
            .chunks(*shape.last().unwrap())
            .map(|r| cpu_logsumexp(r) as f32)
            .collect();
        // WGSL's exp and log are a few ulp (log: 2^-21 absolute near 1); the shifted sum's
        // rounding (≤ 3e-5 relative, see SUM_RTOL) enters through log as ≤ 3e-5 absolute.
        assert_close(&format!("logsumexp {shape:?}"), &got, &want, 3e-5, 1e-6);
    }
}

#[test]
fn logsumexp_and_max_are_exact_at_extremes() {
    let e = gpu!();
    let inf = f32::INFINITY;
    let rows: [&[f32]; 8] = [
        &[1e4, 1e4 - 1.0, 1e4 - 50.0],
        &[-1e4, -1e4 + 0.5, -1e4 - 3.0],
        &[1e4, -1e4, 0.0],
        &[7.0; 3],
        &[-inf, 2.0, -inf],
        &[-inf, -inf, -inf],
        &[inf, 1.0, -inf],
        &[-3.5],
    ];
    for row in rows {
        let t = Tensor::from_slice(e, row, &[1, row.len()]).unwrap();
        let got = rd::logsumexp_last(&t).unwrap().to_vec::<f32>().unwrap();
        // f32 of the f64 answer is the best possible; one ulp of 1e4 is 1e-3, hence rtol.
        assert_close(
            &format!("logsumexp {row:?}"),
            &got,
            &[cpu_logsumexp(row) as f32],
            1e-6,
            2e-7,
        );
        let got = rd::reduce_last(Reduce::Max, &t)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let want = cpu_fold(Reduce::Max, row.iter().copied()) as f32;
        assert_close(&format!("max {row:?}"), &got, &[want], 0.0, 0.0);
    }
    // Rows longer than a 4,096-element piece merge (max, log-sum) pairs: pieces of −inf next to
    // pieces of ±1e4 must neither underflow nor turn into NaN.
    let cols = 3 * 4096 + 5;
    let rows = long_extreme_rows(cols);
    let t = Tensor::from_slice(e, &rows.concat(), &[rows.len(), cols]).unwrap();
    let got = rd::logsumexp_last(&t).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f32> = rows.iter().map(|r| cpu_logsumexp(r) as f32).collect();
    // Each piece's log-sum is rounded once more than in a single pass: a few ulp of the result.
    assert_close("logsumexp long rows", &got, &want, 1e-6, 5e-7);
    let got = rd::reduce_last(Reduce::Max, &t)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = cpu_reduce_last(Reduce::Max, &rows.concat(), cols)
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_close("max long rows", &got, &want, 0.0, 0.0);
}

/// Rows of `cols` values at the extremes: −inf pieces before ±1e4 values, all −inf, one +inf.
pub fn long_extreme_rows(cols: usize) -> Vec<Vec<f32>> {
    let mut r = rng(15);
    let inf = f32::INFINITY;
    let mut rows = Vec::new();
    for centre in [1e4f32, -1e4, 0.0] {
        let mut row = uniform(&mut r, cols, centre - 5.0, centre + 5.0);
        row[..5000].fill(-inf);
        rows.push(row);
    }
    rows.push(vec![-inf; cols]);
    let mut row = uniform(&mut r, cols, -1.0, 1.0);
    row[9000] = inf;
    rows.push(row);
    rows
}

#[test]
fn reductions_refuse_bad_dtypes_and_shapes_with_typed_errors() {
    let e = gpu!();
    let x = Tensor::zeros(e, &[4, 5], DType::F32).unwrap();
    let u = Tensor::zeros(e, &[4, 5], DType::U32).unwrap();
    let scalar = Tensor::zeros(e, &[], DType::F32).unwrap();
    let wrong = Tensor::zeros(e, &[5], DType::F32).unwrap();
    let wrong_u = Tensor::zeros(e, &[4], DType::U32).unwrap();
    assert!(matches!(
        rd::reduce_last(Reduce::Sum, &u),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(matches!(
        rd::reduce_first(Reduce::Max, &u),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(matches!(rd::sum_all(&u), Err(Error::DTypeMismatch { .. })));
    assert!(matches!(
        rd::logsumexp_last(&u),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(matches!(
        rd::reduce_last(Reduce::Mean, &scalar),
        Err(Error::BadInput { .. })
    ));
    assert!(matches!(
        rd::reduce_first(Reduce::Mean, &scalar),
        Err(Error::BadInput { .. })
    ));
    assert!(matches!(
        rd::reduce_last_into(Reduce::Sum, &x, &wrong),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        rd::reduce_last_into(Reduce::Sum, &x, &wrong_u),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(matches!(
        rd::reduce_first_into(Reduce::Sum, &x, &wrong_u),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(matches!(
        rd::logsumexp_last_into(&x, &wrong),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        rd::sum_all_into(&x, &wrong),
        Err(Error::ShapeMismatch { .. })
    ));
    // A scalar sums to itself.
    let s = Tensor::from_slice(e, &[2.5f32], &[]).unwrap();
    assert_eq!(rd::sum_all(&s).unwrap().to_vec::<f32>().unwrap(), [2.5]);
}
