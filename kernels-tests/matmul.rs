//! CPU twin of `shaders/matmul.wgsl` (f64 accumulation) and randomised GPU-vs-CPU comparisons
//! over all transposition cases, bias, ReLU and accumulation, on awkward shapes.

use crate::{assert_close, awkward, gpu, rng, uniform};
use latent::kernels::matmul::{self, Kernel, Matmul};
use latent::{DType, Engine, Error, Tensor};
use rand::Rng;

// ---- CPU twin -------------------------------------------------------------------------------

/// C[m, n] = (init + Σ_k A[m, k]·B[k, n] + bias[n]), ReLU'd if asked; A stored [K, M] when
/// `ta`, B stored [N, K] when `tb`.
#[allow(clippy::too_many_arguments)]
pub fn cpu_matmul(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    ta: bool,
    tb: bool,
    bias: Option<&[f32]>,
    relu: bool,
    init: Option<&[f32]>,
) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                s += av as f64 * bv as f64;
            }
            s += bias.map_or(0.0, |bv| bv[j] as f64);
            if relu {
                s = s.max(0.0);
            }
            s += init.map_or(0.0, |c0| c0[i * n + j] as f64);
            c[i * n + j] = s as f32;
        }
    }
    c
}

// ---- tests ----------------------------------------------------------------------------------

/// f32 sums of K products of values in [-1, 1] drift like sqrt(K)·ε relative to f64.
fn tol(k: usize) -> f32 {
    2e-6 * (k as f32).sqrt() + 1e-6
}

/// Where a case runs: the engine, the forced kernel family, and the multiple every side is
/// rounded up to (the wide kernels need 8-float runs).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub e: &'a Engine,
    pub kernel: Kernel,
    pub round: usize,
}

pub struct Case {
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    bias: bool,
    relu: bool,
    accumulate: bool,
}

fn check(t: Target, case: &Case, seed: u64) {
    let mut r = rng(seed);
    let e = t.e;
    let up = |x: usize| x.div_ceil(t.round) * t.round;
    let (m, k, n) = (up(case.m), up(case.k), up(case.n));
    let (ta, tb) = (case.ta, case.tb);
    let a = uniform(&mut r, m * k, -1.0, 1.0);
    let b = uniform(&mut r, k * n, -1.0, 1.0);
    let bias = uniform(&mut r, n, -1.0, 1.0);
    let init = uniform(&mut r, m * n, -1.0, 1.0);
    let ta_t = Tensor::from_slice(e, &a, &if ta { [k, m] } else { [m, k] }).unwrap();
    let tb_t = Tensor::from_slice(e, &b, &if tb { [n, k] } else { [k, n] }).unwrap();
    let bias_t = Tensor::from_slice(e, &bias, &[n]).unwrap();
    let opts = Matmul {
        trans_a: ta,
        trans_b: tb,
        bias: case.bias.then_some(&bias_t),
        relu: case.relu,
        accumulate: case.accumulate,
        kernel: t.kernel,
    };
    let got = if case.accumulate {
        let c = Tensor::from_slice(e, &init, &[m, n]).unwrap();
        matmul::matmul_into(&ta_t, &tb_t, &opts, &c).unwrap();
        c.to_vec::<f32>().unwrap()
    } else {
        let c = matmul::matmul_with(&ta_t, &tb_t, &opts).unwrap();
        assert_eq!(c.shape(), &[m, n]);
        c.to_vec::<f32>().unwrap()
    };
    let want = cpu_matmul(
        &a,
        &b,
        (m, k, n),
        ta,
        tb,
        case.bias.then_some(&bias[..]),
        case.relu,
        case.accumulate.then_some(&init[..]),
    );
    let what = format!(
        "matmul {:?} m{m} k{k} n{n} ta{ta} tb{tb} bias{} relu{} acc{}",
        t.kernel, case.bias, case.relu, case.accumulate
    );
    assert_close(&what, &got, &want, tol(k), 1e-5);
}

/// Random shapes (awkward sizes) in all four transposition cases.
pub fn random_shapes(t: Target, seed: u64, trials: u64) {
    let mut r = rng(seed);
    for trial in 0..trials {
        let case = Case {
            m: awkward(&mut r, 160),
            k: awkward(&mut r, 300),
            n: awkward(&mut r, 160),
            ta: trial % 2 == 1,
            tb: (trial / 2) % 2 == 1,
            bias: false,
            relu: false,
            accumulate: false,
        };
        check(t, &case, seed * 1000 + trial);
    }
}

/// Sides of 1 and just around the 8-row, 32-column tile and the vec4 width.
pub fn tile_edges(t: Target) {
    let sizes = [
        1usize, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 33, 47, 49, 65,
    ];
    let mut r = rng(11);
    for (i, &m) in sizes.iter().enumerate() {
        let n = sizes[(i * 7 + 3) % sizes.len()];
        let k = sizes[(i * 5 + 1) % sizes.len()];
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let case = Case {
                m,
                k,
                n,
                ta,
                tb,
                bias: false,
                relu: false,
                accumulate: false,
            };
            check(t, &case, r.random());
        }
    }
}

/// Bias, ReLU and accumulation in combination with the transpositions.
pub fn fusions(t: Target) {
    let mut r = rng(12);
    for trial in 0..16u64 {
        let case = Case {
            m: awkward(&mut r, 100),
            k: awkward(&mut r, 200),
            n: awkward(&mut r, 100),
            ta: trial % 2 == 1,
            tb: (trial / 2) % 2 == 1,
            bias: (trial / 4) % 2 == 0,
            relu: trial % 3 != 0,
            accumulate: (trial / 8) % 2 == 1,
        };
        check(t, &case, 200 + trial);
    }
}

/// The MLP VAE's layer products: forward, dX with B transposed, dW with A transposed.
pub fn w1_shapes(t: Target) {
    for (i, &(m, k, n)) in [(128, 784, 512), (128, 32, 256), (128, 512, 784)]
        .iter()
        .enumerate()
    {
        let products = [
            (m, k, n, false, false),
            (m, n, k, false, true),
            (k, m, n, true, false),
        ];
        for (j, (mm, kk, nn, ta, tb)) in products.into_iter().enumerate() {
            let case = Case {
                m: mm,
                k: kk,
                n: nn,
                ta,
                tb,
                bias: j == 0,
                relu: j == 0,
                accumulate: false,
            };
            check(t, &case, 300 + (i * 3 + j) as u64);
        }
    }
}

/// One column block and the smallest K: `tile_m`·65,536 + 3 rows need more than 65,535
/// workgroups, so the grid must fold. B = 2·I keeps every product exact.
pub fn more_than_65535_workgroups(t: Target, tile_m: usize) {
    let (m, k) = (tile_m * 65_536 + 3, t.round);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 97) as f32).collect();
    let at = Tensor::from_slice(t.e, &a, &[m, k]).unwrap();
    let eye: Vec<f32> = (0..k * k)
        .map(|i| if i % (k + 1) == 0 { 2.0 } else { 0.0 })
        .collect();
    let bt = Tensor::from_slice(t.e, &eye, &[k, k]).unwrap();
    let opts = Matmul {
        kernel: t.kernel,
        ..Default::default()
    };
    let got = matmul::matmul_with(&at, &bt, &opts)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (i, (&g, &v)) in got.iter().zip(&a).enumerate() {
        assert_eq!(g, 2.0 * v, "element {i}");
    }
}

// The portable kernel runs on an engine whose device has no subgroups (as a host program's
// device may); kernels-tests/matmul_subgroup.rs runs the same cases on the default engine.

fn portable() -> Option<Target<'static>> {
    let e = crate::portable_engine()?;
    Some(Target {
        e,
        kernel: Kernel::Auto,
        round: 1,
    })
}

#[test]
fn portable_matmul_matches_cpu_on_random_shapes_and_transpositions() {
    let Some(t) = portable() else { return };
    random_shapes(t, 10, 24);
}

#[test]
fn portable_matmul_handles_ones_and_tile_edges() {
    let Some(t) = portable() else { return };
    tile_edges(t);
}

#[test]
fn portable_matmul_fuses_bias_relu_and_accumulation() {
    let Some(t) = portable() else { return };
    fusions(t);
}

#[test]
fn portable_matmul_covers_more_than_65535_workgroups() {
    let Some(t) = portable() else { return };
    more_than_65535_workgroups(t, 8);
}

#[test]
fn a_kernel_the_device_lacks_is_a_typed_error() {
    let Some(t) = portable() else { return };
    let a = Tensor::zeros(t.e, &[8, 8], DType::F32).unwrap();
    for kernel in [Kernel::Subgroup, Kernel::Wide] {
        let opts = Matmul {
            kernel,
            ..Default::default()
        };
        let got = matmul::matmul_with(&a, &a, &opts);
        assert!(matches!(got, Err(Error::BadInput { .. })), "{kernel:?}");
    }
}

#[test]
fn matmul_shape_errors_are_typed() {
    let e = gpu!();
    let a = Tensor::zeros(e, &[3, 4], DType::F32).unwrap();
    let b = Tensor::zeros(e, &[5, 6], DType::F32).unwrap();
    assert!(matches!(
        matmul::matmul(&a, &b),
        Err(Error::ShapeMismatch { .. })
    ));
    let v = Tensor::zeros(e, &[4], DType::F32).unwrap();
    assert!(matches!(
        matmul::matmul(&a, &v),
        Err(Error::BadInput { .. })
    ));
    let b = Tensor::zeros(e, &[4, 6], DType::F32).unwrap();
    let bias = Tensor::zeros(e, &[5], DType::F32).unwrap();
    let opts = Matmul {
        bias: Some(&bias),
        ..Default::default()
    };
    assert!(matches!(
        matmul::matmul_with(&a, &b, &opts),
        Err(Error::ShapeMismatch { .. })
    ));
    let out = Tensor::zeros(e, &[3, 5], DType::F32).unwrap();
    assert!(matches!(
        matmul::matmul_into(&a, &b, &Matmul::default(), &out),
        Err(Error::ShapeMismatch { .. })
    ));
    let u = Tensor::from_slice(e, &[1u32; 24], &[4, 6]).unwrap();
    assert!(matches!(
        matmul::matmul(&a, &u),
        Err(Error::DTypeMismatch { .. })
    ));
}
