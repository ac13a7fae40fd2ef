//! CPU twin of `shaders/elementwise.wgsl` and randomised GPU-vs-CPU comparisons.
//! Tolerance: WGSL allows exp/log/tanh a few ULP (exp: 3 + 2|x| ULP), so rtol 1e-5 on |x| ≤ 8.

use crate::{assert_close, awkward, gpu, rng, uniform};
use latent::kernels::elementwise::{self as ew, Binary, Broadcast, Unary};
use latent::{DType, Tensor};
use rand::Rng;

// ---- CPU twin -------------------------------------------------------------------------------

/// The unary maps in f64 (the spec; the f32 comparisons round its result once).
pub fn cpu_unary(op: Unary, v: f64) -> f64 {
    match op {
        Unary::Neg => -v,
        Unary::Exp => v.exp(),
        Unary::Log => v.ln(),
        Unary::Sqrt => v.sqrt(),
        Unary::Relu => v.max(0.0),
        Unary::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Unary::Tanh => v.tanh(),
        Unary::Softplus => v.max(0.0) + (-v.abs()).exp().ln_1p(),
        Unary::Square => v * v,
        Unary::LeakyRelu => {
            if v > 0.0 {
                v
            } else {
                ew::LEAK as f64 * v
            }
        }
    }
}

pub fn cpu_binary(op: Binary, u: f32, v: f32) -> f32 {
    match op {
        Binary::Add => u + v,
        Binary::Sub => u - v,
        Binary::Mul => u * v,
        Binary::Div => u / v,
        Binary::Max => u.max(v),
        Binary::Min => u.min(v),
        Binary::MaskPositive => {
            if v > 0.0 {
                u
            } else {
                0.0
            }
        }
        Binary::MaskLeaky => {
            if v > 0.0 {
                u
            } else {
                ew::LEAK * u
            }
        }
    }
}

/// Index into an operand broadcast as `mode` against an output with `cols` columns.
pub fn cpu_source(i: usize, mode: Broadcast, cols: usize) -> usize {
    match mode {
        Broadcast::Full => i,
        Broadcast::Row => i % cols,
        Broadcast::Column => i / cols,
        Broadcast::Scalar => 0,
    }
}

// ---- tests ----------------------------------------------------------------------------------

fn domain(op: Unary) -> (f32, f32) {
    match op {
        Unary::Log | Unary::Sqrt => (1e-3, 50.0),
        _ => (-8.0, 8.0),
    }
}

#[test]
fn unary_matches_cpu_on_random_shapes() {
    let e = gpu!();
    let mut r = rng(1);
    for op in Unary::ALL {
        for _ in 0..4 {
            // The second shape has n % 4 == 0: the vec4 entry point.
            let shape = [awkward(&mut r, 300), awkward(&mut r, 300)];
            let shape = if r.random_bool(0.5) {
                [shape[0], 4 * shape[1]]
            } else {
                shape
            };
            let (lo, hi) = domain(op);
            let x = uniform(&mut r, shape[0] * shape[1], lo, hi);
            let got = ew::unary(op, &Tensor::from_slice(e, &x, &shape).unwrap())
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            let want: Vec<f32> = x.iter().map(|&v| cpu_unary(op, v as f64) as f32).collect();
            assert_close(&format!("{op:?} {shape:?}"), &got, &want, 1e-6, 1e-5);
        }
    }
}

#[test]
fn unary_is_stable_at_extremes() {
    let e = gpu!();
    let x = [-1e4f32, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4];
    let t = Tensor::from_slice(e, &x, &[x.len()]).unwrap();
    for op in [Unary::Sigmoid, Unary::Tanh, Unary::Softplus] {
        let got = ew::unary(op, &t).unwrap().to_vec::<f32>().unwrap();
        let want: Vec<f32> = x.iter().map(|&v| cpu_unary(op, v as f64) as f32).collect();
        assert_close(&format!("{op:?} extremes"), &got, &want, 1e-6, 1e-6);
    }
}

#[test]
fn binary_matches_cpu_with_every_broadcast() {
    let e = gpu!();
    let mut r = rng(2);
    let modes = [
        Broadcast::Full,
        Broadcast::Row,
        Broadcast::Column,
        Broadcast::Scalar,
    ];
    for op in Binary::ALL {
        // Columns a multiple of 4 take the vec4 entry points (full and row operands).
        for (mode, vec4) in modes.into_iter().flat_map(|m| [(m, false), (m, true)]) {
            let rows = awkward(&mut r, 200);
            let cols = match vec4 {
                true => 4 * awkward(&mut r, 50),
                false => awkward(&mut r, 200),
            };
            let n = rows * cols;
            let b_shape: Vec<usize> = match mode {
                Broadcast::Full => vec![rows, cols],
                Broadcast::Row => vec![cols],
                Broadcast::Column => vec![rows, 1],
                Broadcast::Scalar => vec![1],
            };
            let bn: usize = b_shape.iter().product();
            let a = uniform(&mut r, n, -4.0, 4.0);
            // Divisors kept away from zero so the comparison is about the kernel, not 1/0.
            let b: Vec<f32> = uniform(&mut r, bn, 0.5, 3.0)
                .into_iter()
                .map(|v| if r.random_bool(0.5) { -v } else { v })
                .collect();
            let ta = Tensor::from_slice(e, &a, &[rows, cols]).unwrap();
            let tb = Tensor::from_slice(e, &b, &b_shape).unwrap();
            // Broadcast on the right, and (operands swapped) on the left.
            let got = ew::binary(op, &ta, &tb).unwrap().to_vec::<f32>().unwrap();
            let mode = if rows == 1 && mode == Broadcast::Column {
                Broadcast::Scalar
            } else {
                mode
            };
            let want: Vec<f32> = (0..n)
                .map(|i| cpu_binary(op, a[i], b[cpu_source(i, mode, cols)]))
                .collect();
            assert_close(
                &format!("{op:?} {mode:?} [{rows},{cols}]"),
                &got,
                &want,
                1e-6,
                1e-6,
            );
            let got = ew::binary(op, &tb, &ta).unwrap().to_vec::<f32>().unwrap();
            let want: Vec<f32> = (0..n)
                .map(|i| cpu_binary(op, b[cpu_source(i, mode, cols)], a[i]))
                .collect();
            assert_close(&format!("{op:?} swapped {mode:?}"), &got, &want, 1e-6, 1e-6);
        }
    }
}

#[test]
fn binary_refuses_shapes_that_do_not_broadcast() {
    let e = gpu!();
    let a = Tensor::zeros(e, &[4, 5], DType::F32).unwrap();
    for bad in [vec![4usize], vec![3, 5], vec![5, 4], vec![2, 2]] {
        let b = Tensor::zeros(e, &bad, DType::F32).unwrap();
        let err = ew::binary(Binary::Add, &a, &b).unwrap_err();
        assert!(
            matches!(err, latent::Error::ShapeMismatch { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn affine_clamp_fill_match_cpu() {
    let e = gpu!();
    let mut r = rng(3);
    let shape = [37, 129];
    let x = uniform(&mut r, 37 * 129, -5.0, 5.0);
    let t = Tensor::from_slice(e, &x, &shape).unwrap();
    let got = ew::affine(&t, 1.5, -0.25).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f32> = x.iter().map(|v| 1.5f32.mul_add(*v, -0.25)).collect();
    assert_close("affine", &got, &want, 1e-6, 1e-6);
    let got = ew::clamp(&t, -1.0, 2.0).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f32> = x.iter().map(|v| v.clamp(-1.0, 2.0)).collect();
    assert_close("clamp", &got, &want, 0.0, 0.0);
    assert!(ew::clamp(&t, 2.0, -1.0).is_err());
    let got = Tensor::full(e, &shape, 3.25)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(got.iter().all(|&v| v == 3.25));
}

#[test]
fn elementwise_covers_more_than_65535_workgroups() {
    let e = gpu!();
    // 65,536 workgroups of 256 plus a partial one: the grid must be folded into 2-D.
    let n = 65_536 * 256 + 77;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
    let t = Tensor::from_slice(e, &x, &[n]).unwrap();
    let got = ew::affine(&t, 2.0, 1.0).unwrap().to_vec::<f32>().unwrap();
    for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
        assert_eq!(g, 2.0 * v + 1.0, "element {i}");
    }
}

#[test]
fn broadcast_rules_follow_numpy_for_rows_columns_and_scalars() {
    use ew::broadcast_of as b;
    assert_eq!(b(&[4, 5], &[4, 5]), Some(Broadcast::Full));
    assert_eq!(b(&[5], &[4, 5]), Some(Broadcast::Row));
    assert_eq!(b(&[1, 1, 5], &[2, 4, 5]), Some(Broadcast::Row));
    assert_eq!(b(&[4, 1], &[4, 5]), Some(Broadcast::Column));
    assert_eq!(b(&[2, 4, 1], &[2, 4, 5]), Some(Broadcast::Column));
    assert_eq!(b(&[1], &[4, 5]), Some(Broadcast::Scalar));
    assert_eq!(b(&[4], &[4, 5]), None);
    assert_eq!(b(&[4, 2, 1], &[2, 4, 5]), None);
    assert_eq!(b(&[5, 4], &[4, 5]), None);
}

#[test]
fn affine_broadcasts_and_accumulate_adds_in_place() {
    let e = gpu!();
    let mut r = rng(4);
    let (rows, cols) = (33, 70);
    let x = uniform(&mut r, rows * cols, -2.0, 2.0);
    let col = uniform(&mut r, rows, -2.0, 2.0);
    let g = Tensor::from_slice(e, &[0.75f32], &[1]).unwrap();
    // A scalar spread over a [rows] vector (the backward of a mean).
    let out = Tensor::uninit(e, &[rows], DType::F32).unwrap();
    ew::affine_into(&g, 0.5, 1.0, &out).unwrap();
    assert!(out.to_vec::<f32>().unwrap().iter().all(|&v| v == 1.375));
    // out += 2·column, broadcast over the columns.
    let acc = Tensor::from_slice(e, &x, &[rows, cols]).unwrap();
    let c = Tensor::from_slice(e, &col, &[rows, 1]).unwrap();
    ew::accumulate(&acc, &c, 2.0).unwrap();
    let want: Vec<f32> = (0..rows * cols)
        .map(|i| 2.0f32.mul_add(col[i / cols], x[i]))
        .collect();
    assert_close(
        "accumulate column",
        &acc.to_vec::<f32>().unwrap(),
        &want,
        1e-6,
        1e-6,
    );
    let bad = Tensor::zeros(e, &[cols + 1], DType::F32).unwrap();
    assert!(matches!(
        ew::accumulate(&acc, &bad, 1.0),
        Err(latent::Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        ew::accumulate(&acc, &acc, 1.0),
        Err(latent::Error::Binding {
            problem: latent::BindingProblem::Aliased { .. },
            ..
        })
    ));
}

/// affine and accumulate with n % 4 == 0 run four elements per invocation (full and row
/// operands); the results equal the scalar formulas exactly (one fma each).
#[test]
fn affine_and_accumulate_vec4_paths_match_cpu() {
    let e = gpu!();
    let mut r = rng(5);
    let (rows, cols) = (9, 44);
    let x = uniform(&mut r, rows * cols, -2.0, 2.0);
    let row = uniform(&mut r, cols, -2.0, 2.0);
    let tx = Tensor::from_slice(e, &x, &[rows, cols]).unwrap();
    let trow = Tensor::from_slice(e, &row, &[cols]).unwrap();
    for (what, src, t) in [("full", &x, &tx), ("row", &row, &trow)] {
        let out = Tensor::uninit(e, &[rows, cols], DType::F32).unwrap();
        ew::affine_into(t, -1.5, 0.25, &out).unwrap();
        let got = out.to_vec::<f32>().unwrap();
        let want: Vec<f32> = (0..rows * cols)
            .map(|i| (-1.5f32).mul_add(src[i % src.len()], 0.25))
            .collect();
        assert_close(&format!("affine {what}"), &got, &want, 0.0, 0.0);
        ew::accumulate(&out, t, 2.0).unwrap();
        let got2 = out.to_vec::<f32>().unwrap();
        let want: Vec<f32> = (0..rows * cols)
            .map(|i| 2.0f32.mul_add(src[i % src.len()], got[i]))
            .collect();
        assert_close(&format!("accumulate {what}"), &got2, &want, 0.0, 0.0);
    }
}
