//! CPU twin of `shaders/softmax.wgsl` (f64: the spec) and GPU-vs-CPU comparisons.
//! Run with `cargo test --release softmax`.

use crate::reduce::{cpu_logsumexp, long_extreme_rows, random_shapes};
use crate::{Spec, assert_close, assert_within, error_kind, gpu, rng, uniform};
use latent::kernels::softmax as sm;
use latent::{DType, Error, Tensor};

// ---- CPU twin -------------------------------------------------------------------------------

/// Row-wise log-softmax `v − logsumexp(row)` (NaN for a row of −inf: 0/0, as in PyTorch).
pub fn cpu_log_softmax(x: &[f32], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let lse = cpu_logsumexp(row);
            row.iter().map(move |&v| v as f64 - lse)
        })
        .collect()
}

/// Row-wise softmax `exp(v − logsumexp(row))`.
pub fn cpu_softmax(x: &[f32], cols: usize) -> Vec<f64> {
    cpu_log_softmax(x, cols).into_iter().map(f64::exp).collect()
}

/// Backward of the row-wise log-softmax: `dx = dy − softmax(x)·Σ_row dy`, as (value, magnitude)
/// with magnitude |dy| + p·(|Σ dy| + Σ|dy|), the sizes its terms' roundings scale with.
pub fn cpu_log_softmax_backward(x: &[f32], dy: &[f32], cols: usize) -> Vec<Spec> {
    let p = cpu_softmax(x, cols);
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in dy.chunks(cols).enumerate() {
        let sum: f64 = row.iter().map(|&v| v as f64).sum();
        let abs: f64 = row.iter().map(|&v| (v as f64).abs()).sum();
        for (j, &g) in row.iter().enumerate() {
            let p = p[r * cols + j];
            out.push((g as f64 - p * sum, (g as f64).abs() + p * (sum.abs() + abs)));
        }
    }
    out
}

/// Backward of the row-wise log-sum-exp: `dx = dy[row]·softmax(x)`, magnitude |dx|.
pub fn cpu_logsumexp_backward(x: &[f32], dy: &[f32], cols: usize) -> Vec<Spec> {
    let p = cpu_softmax(x, cols);
    p.iter()
        .enumerate()
        .map(|(i, p)| {
            let v = dy[i / cols] as f64 * p;
            (v, v.abs())
        })
        .collect()
}

// ---- tests ----------------------------------------------------------------------------------

fn to_f32(v: Vec<f64>) -> Vec<f32> {
    v.into_iter().map(|v| v as f32).collect()
}

/// Both functions on `x` viewed as `shape`, against the twin. Tolerance: the GPU computes
/// exp((v − max) − log_sum); v − max is exact, log_sum carries WGSL's log error (2^-21 absolute
/// near 1) plus the f32 sum's (≤ 3e-5 relative, see SUM_RTOL in reduce.rs), which enter the
/// log-softmax as absolute error and the softmax as relative error; exp adds a few ulp.
fn check(what: &str, x: &[f32], shape: &[usize]) {
    let e = gpu!();
    let cols = *shape.last().unwrap();
    let t = Tensor::from_slice(e, x, shape).unwrap();
    let got = sm::softmax(&t).unwrap();
    assert_eq!(got.shape(), shape);
    let want = to_f32(cpu_softmax(x, cols));
    assert_close(
        &format!("softmax {what}"),
        &got.to_vec().unwrap(),
        &want,
        1e-7,
        5e-5,
    );
    let got = sm::log_softmax(&t).unwrap().to_vec::<f32>().unwrap();
    let want = to_f32(cpu_log_softmax(x, cols));
    assert_close(&format!("log_softmax {what}"), &got, &want, 5e-5, 1e-6);
}

#[test]
fn softmax_and_log_softmax_match_cpu_on_random_shapes() {
    let mut r = rng(20);
    for shape in random_shapes(20) {
        let x = uniform(&mut r, shape.iter().product(), -20.0, 20.0);
        check(&format!("{shape:?}"), &x, &shape);
    }
}

#[test]
fn softmax_is_stable_at_extremes() {
    let inf = f32::INFINITY;
    let rows: [&[f32]; 7] = [
        // Huge values: one ulp of 1e4 is 1e-3, so shifting after the LSE would fail here.
        &[1e4, 1e4 - 1.0, 1e4 - 0.25, 1e4 - 90.0],
        &[-1e4, -1e4 + 0.5, -1e4 - 3.0, -1e4 + 2.0],
        &[1e4, -1e4, 0.0, 1e4],
        &[7.0; 4],
        // −inf entries get probability 0 (log-probability −inf).
        &[-inf, 2.0, -inf, 1.0],
        // A row of −inf has no distribution: NaN, like the twin and PyTorch.
        &[-inf; 4],
        &[-1e30, 1e30, 0.0, 3.0],
    ];
    for row in rows {
        check(&format!("{row:?}"), row, &[1, 4]);
    }
    // Many short 1e4-scale rows, and rows longer than one 4,096-element piece.
    let x = uniform(&mut rng(21), 5000 * 9, 9_990.0, 10_000.0);
    check("1e4 rows", &x, &[5000, 9]);
    let cols = 3 * 4096 + 5;
    let rows = long_extreme_rows(cols);
    check("long rows", &rows.concat(), &[rows.len(), cols]);
}

#[test]
fn softmax_refuses_bad_dtypes_and_shapes_with_typed_errors() {
    let e = gpu!();
    let x = Tensor::zeros(e, &[4, 5], DType::F32).unwrap();
    let u = Tensor::zeros(e, &[4, 5], DType::U32).unwrap();
    let wrong = Tensor::zeros(e, &[5, 4], DType::F32).unwrap();
    let scalar = Tensor::zeros(e, &[], DType::F32).unwrap();
    assert!(matches!(sm::softmax(&u), Err(Error::DTypeMismatch { .. })));
    assert!(matches!(
        sm::log_softmax_into(&x, &u),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(matches!(
        sm::softmax_into(&x, &wrong),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        sm::log_softmax(&scalar),
        Err(Error::BadInput { .. })
    ));
    assert!(matches!(
        sm::softmax_into(&x, &x),
        Err(Error::Binding {
            problem: latent::BindingProblem::Aliased { .. },
            ..
        })
    ));
}

/// Both backward passes on `x` viewed as `shape` with random upstream gradients, against the
/// twins; the log-softmax backward takes y from the GPU forward, as the tape does. Tolerance
/// (units of 2^-24 of the magnitude): y's absolute error (≤ 5e-5, see `check`: 840 units)
/// becomes p's relative error; exp adds 3 + 2|z| units (z ≥ −80 here: 163); a row sum of dy
/// rounds within 481 units of Σ|dy| (SUM_RTOL in reduce.rs); the rest is a few roundings.
fn check_backward(what: &str, x: &[f32], shape: &[usize], seed: u64) {
    let e = gpu!();
    const ULPS: f64 = 840.0 + 163.0 + 481.0 + 16.0;
    let cols = *shape.last().unwrap();
    let t = Tensor::from_slice(e, x, shape).unwrap();
    let dy = uniform(&mut rng(seed), x.len(), -1.0, 1.0);
    let y = sm::log_softmax(&t).unwrap();
    let dy_t = Tensor::from_slice(e, &dy, shape).unwrap();
    let dx = sm::log_softmax_backward(&y, &dy_t).unwrap();
    assert_eq!(dx.shape(), shape);
    let want = cpu_log_softmax_backward(x, &dy, cols);
    let got = dx.to_vec::<f32>().unwrap();
    assert_within(&format!("log_softmax_backward {what}"), &got, &want, ULPS);

    let mut reduced = shape[..shape.len() - 1].to_vec();
    if reduced.is_empty() {
        reduced.push(1);
    }
    let g = &dy[..x.len() / cols];
    let g_t = Tensor::from_slice(e, g, &reduced).unwrap();
    let dx = latent::kernels::softmax::logsumexp_last_backward(&t, &g_t).unwrap();
    assert_eq!(dx.shape(), shape);
    let want = cpu_logsumexp_backward(x, g, cols);
    let got = dx.to_vec::<f32>().unwrap();
    assert_within(&format!("logsumexp_backward {what}"), &got, &want, ULPS);
}

#[test]
fn log_softmax_and_logsumexp_backward_match_cpu_on_random_shapes() {
    // Rows of 1, around the 64-invocation workgroup, at and past the 4,096-element piece (one
    // fused pass below it, reduce.wgsl's row sums above), rank 1 and 3.
    let mut r = rng(22);
    for (i, shape) in random_shapes(23).iter().enumerate() {
        let x = uniform(&mut r, shape.iter().product(), -20.0, 20.0);
        check_backward(&format!("{shape:?}"), &x, shape, 30 + i as u64);
    }
}

#[test]
fn log_softmax_and_logsumexp_backward_are_stable_at_extremes() {
    let inf = f32::INFINITY;
    let rows: [&[f32]; 6] = [
        // One ulp of 1e4 is 1e-3: the backward must not go through exp(x − lse).
        &[1e4, 1e4 - 1.0, 1e4 - 0.25, 1e4 - 90.0],
        &[-1e4, -1e4 + 0.5, -1e4 - 3.0, -1e4 + 2.0],
        &[7.0; 4],
        // −inf entries have probability 0: their dx is dy (log-softmax) or 0 (log-sum-exp).
        &[-inf, 2.0, -inf, 1.0],
        // No distribution: NaN where the twin has NaN, like the forward.
        &[-inf; 4],
        &[inf, 1.0, -inf, 0.0],
    ];
    for (i, row) in rows.iter().enumerate() {
        check_backward(&format!("{row:?}"), row, &[1, 4], 40 + i as u64);
    }
    let cols = 3 * 4096 + 5;
    let rows = long_extreme_rows(cols);
    check_backward("long rows", &rows.concat(), &[rows.len(), cols], 50);
}

#[test]
fn softmax_backward_passes_refuse_bad_shapes_with_typed_errors() {
    let e = gpu!();
    let t = |shape: &[usize]| Tensor::zeros(e, shape, DType::F32).unwrap();
    let x = t(&[4, 5]);
    let u = Tensor::zeros(e, &[4, 5], DType::U32).unwrap();
    let lsb = |y: &Tensor, dy: &Tensor| error_kind(sm::log_softmax_backward(y, dy));
    assert_eq!(lsb(&x, &t(&[4, 5])), "Ok");
    assert_eq!(lsb(&x, &t(&[5, 4])), "ShapeMismatch");
    assert_eq!(lsb(&x, &u), "DTypeMismatch");
    assert_eq!(lsb(&u, &x), "DTypeMismatch");
    assert_eq!(lsb(&t(&[]), &t(&[])), "BadInput");
    let lse = |x: &Tensor, dy: &Tensor| error_kind(sm::logsumexp_last_backward(x, dy));
    assert_eq!(lse(&x, &t(&[4])), "Ok");
    assert_eq!(lse(&t(&[2, 3, 5]), &t(&[2, 3])), "Ok");
    assert_eq!(lse(&t(&[5]), &t(&[1])), "Ok");
    assert_eq!(lse(&x, &t(&[5])), "ShapeMismatch");
    assert_eq!(lse(&x, &t(&[4, 1])), "ShapeMismatch");
    assert_eq!(
        lse(&x, &Tensor::zeros(e, &[4], DType::U32).unwrap()),
        "DTypeMismatch"
    );
    assert_eq!(lse(&t(&[]), &t(&[1])), "BadInput");
}
