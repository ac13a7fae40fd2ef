//! CPU twin of `shaders/softmax.wgsl` (f64: the spec) and GPU-vs-CPU comparisons.
//! Run with `cargo test --release softmax`.

use crate::reduce::{cpu_logsumexp, long_extreme_rows, random_shapes};
use crate::{assert_close, gpu, rng, uniform};
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
