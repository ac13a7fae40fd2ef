//! CPU twin of `shaders/batchnorm.wgsl` in f64 (two-pass statistics: the spec), GPU-vs-CPU
//! comparisons, finite-difference gradient checks and PyTorch's running statistics.
//! Run with `cargo test --release batchnorm`.

use crate::{assert_close, assert_matches_fd, error_kind, fd_gradients, gpu, rng, uniform};
use latent::kernels::batchnorm::{self as bn, BatchNormConfig, BatchNormSaved};
use latent::{DType, Engine, Tensor};
use rand::Rng;

// ---- CPU twin -------------------------------------------------------------------------------

/// `[B, C, H, W]` or `[B, F]` as (B, C, S = H·W).
fn dims(shape: &[usize]) -> (usize, usize, usize) {
    match *shape {
        [b, f] => (b, f, 1),
        [b, c, h, w] => (b, c, h * w),
        _ => panic!("rank 2 or 4"),
    }
}

/// Channel of element `i` of x.
fn channel(i: usize, c: usize, s: usize) -> usize {
    (i / s) % c
}

/// Per-channel mean and biased variance, two passes (mean first, then Σ(x − mean)²).
pub fn cpu_stats(x: &[f64], shape: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let (b, c, s) = dims(shape);
    let n = (b * s) as f64;
    let mut mean = vec![0.0; c];
    x.iter()
        .enumerate()
        .for_each(|(i, v)| mean[channel(i, c, s)] += v / n);
    let mut var = vec![0.0; c];
    x.iter().enumerate().for_each(|(i, v)| {
        let ch = channel(i, c, s);
        var[ch] += (v - mean[ch]).powi(2) / n;
    });
    (mean, var)
}

/// `γ·(x − mean)/sqrt(var + eps) + β` per element.
pub fn cpu_normalize(
    x: &[f64],
    shape: &[usize],
    [gamma, beta, mean, var]: [&[f64]; 4],
    eps: f64,
) -> Vec<f64> {
    let (_, c, s) = dims(shape);
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            let ch = channel(i, c, s);
            gamma[ch] * (v - mean[ch]) / (var[ch] + eps).sqrt() + beta[ch]
        })
        .collect()
}

/// Training forward: `(y, batch mean, biased batch variance)`.
pub fn cpu_train(
    x: &[f64],
    shape: &[usize],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mean, var) = cpu_stats(x, shape);
    let y = cpu_normalize(x, shape, [gamma, beta, &mean, &var], eps);
    (y, mean, var)
}

/// PyTorch's running update: `(1 − m)·running + m·stat`, the variance unbiased by N/(N − 1).
pub fn cpu_running(running: &mut [f64], stat: &[f64], m: f64, unbias: f64) {
    for (r, s) in running.iter_mut().zip(stat) {
        *r = (1.0 - m) * *r + m * s * unbias;
    }
}

/// Backward of the training forward: `(dx, dγ, dβ)` with the textbook formulas.
pub fn cpu_backward(
    dy: &[f64],
    x: &[f64],
    shape: &[usize],
    gamma: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (b, c, s) = dims(shape);
    let n = (b * s) as f64;
    let (mean, var) = cpu_stats(x, shape);
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let xhat = |i: usize| (x[i] - mean[channel(i, c, s)]) * inv[channel(i, c, s)];
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    for (i, g) in dy.iter().enumerate() {
        dbeta[channel(i, c, s)] += g;
        dgamma[channel(i, c, s)] += g * xhat(i);
    }
    let dx = (0..x.len())
        .map(|i| {
            let ch = channel(i, c, s);
            gamma[ch] * inv[ch] / n * (n * dy[i] - dbeta[ch] - xhat(i) * dgamma[ch])
        })
        .collect();
    (dx, dgamma, dbeta)
}

/// Backward of the eval forward (running statistics constant): `(dx, dγ, dβ)` with
/// `dx = γ·dy/sqrt(var + eps)`, `dγ = Σ dy·(x − mean)/sqrt(var + eps)`, `dβ = Σ dy`.
pub fn cpu_eval_backward(
    dy: &[f64],
    x: &[f64],
    shape: &[usize],
    [gamma, mean, var]: [&[f64]; 3],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (_, c, s) = dims(shape);
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    let mut dx = Vec::with_capacity(x.len());
    for (i, g) in dy.iter().enumerate() {
        let ch = channel(i, c, s);
        dbeta[ch] += g;
        dgamma[ch] += g * (x[i] - mean[ch]) * inv[ch];
        dx.push(gamma[ch] * inv[ch] * g);
    }
    (dx, dgamma, dbeta)
}

// ---- helpers --------------------------------------------------------------------------------

/// Unit roundoff of f32.
const U: f64 = 1.0 / (1u64 << 24) as f64;
/// Relative error of a chunk's Welford statistics (and of f32 block sums over a chunk): a
/// chain of n ≤ 1,024 roundings grows like √n·u ≈ 2e-6 in practice (n·u in the worst case);
/// doubled. The tests see at most about a fifth of it.
const CHAIN: f64 = 4e-6;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| v as f64).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&v| v as f32).collect()
}

fn upload(e: &Engine, v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(e, v, shape).expect("upload")
}

fn read(t: &Tensor) -> Vec<f32> {
    t.to_vec().expect("readback")
}

/// One layer's tensors on both sides: x, γ, β, running mean and variance.
struct Case {
    shape: Vec<usize>,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
}

impl Case {
    /// x of the given mean and spread (uniform, so std = spread/sqrt(3)), random parameters.
    fn random(seed: u64, shape: &[usize], centre: f32, spread: f32) -> Case {
        let mut r = rng(seed);
        let c = dims(shape).1;
        let n = shape.iter().product();
        Case {
            shape: shape.to_vec(),
            x: uniform(&mut r, n, centre - spread, centre + spread),
            gamma: uniform(&mut r, c, -1.5, 1.5),
            beta: uniform(&mut r, c, -1.0, 1.0),
            running_mean: uniform(&mut r, c, -0.5, 0.5),
            running_var: uniform(&mut r, c, 0.5, 2.0),
        }
    }

    fn upload(&self, e: &Engine) -> [Tensor; 5] {
        let c = [self.gamma.len()];
        [
            upload(e, &self.x, &self.shape),
            upload(e, &self.gamma, &c),
            upload(e, &self.beta, &c),
            upload(e, &self.running_mean, &c),
            upload(e, &self.running_var, &c),
        ]
    }
}

/// Shapes with awkward sizes: B = 2, C = 1, odd H·W below and above 4 (f32 lanes; vec4 lanes
/// with segments straddling vec4 units, also from the last channel into the first and from a
/// lone channel into itself), [B, F] inputs, channels of several chunks that end mid-segment,
/// and the W2 layers.
fn random_shapes(seed: u64) -> Vec<Vec<usize>> {
    let mut r = rng(seed);
    let mut shapes = vec![
        vec![2, 1, 1, 1],
        vec![2, 3, 1, 1],
        vec![2, 1, 3, 5],
        vec![3, 5, 7, 7],
        vec![2, 4, 1, 3],
        vec![4, 3, 5, 5],
        vec![2, 1, 7, 2],
        vec![5, 3, 13, 11],
        vec![2, 7],
        vec![9, 12],
        vec![300, 33],
        vec![20_000, 2],
        vec![128, 64, 7, 7],
        vec![128, 32, 14, 14],
        vec![4, 2, 64, 65],
    ];
    for _ in 0..6 {
        let b = r.random_range(2..9);
        let c = r.random_range(1..9);
        shapes.push(vec![b, c, r.random_range(1..20), r.random_range(1..20)]);
    }
    shapes
}

// ---- tests ----------------------------------------------------------------------------------

/// Runs a training step on `case` and compares y, the saved statistics and the running ones
/// with the twin. Errors are scaled by σ: the mean and y are judged relative to the spread of
/// the data, not to its offset, which is what a stable variance must achieve.
fn train_matches_cpu(e: &Engine, case: &Case, what: &str) {
    let cfg = BatchNormConfig::default();
    let [x, gamma, beta, rm, rv] = case.upload(e);
    let (y, saved) = bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &cfg).expect("train");
    let x64 = f64s(&case.x);
    let (want_y, mean, var) = cpu_train(
        &x64,
        &case.shape,
        &f64s(&case.gamma),
        &f64s(&case.beta),
        cfg.eps,
    );
    let (b, c, s) = dims(&case.shape);
    let n = (b * s) as f64;
    let sd: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + cfg.eps).sqrt()).collect();

    // Mean: the shift by the channel's first value and the final addition each round at
    // u·|μ|; Welford's chain in shifted values adds ~CHAIN·σ.
    let mean_tol: Vec<f64> = (0..c)
        .map(|ch| 2.0 * U * mean[ch].abs() + CHAIN * sd[ch])
        .collect();
    let got_mean = f64s(&read(&saved.mean));
    for (ch, (&g, &w)) in got_mean.iter().zip(&mean).enumerate() {
        assert!(
            (g - w).abs() <= mean_tol[ch],
            "{what}: mean[{ch}] gpu {g} cpu {w} (σ {})",
            sd[ch]
        );
    }
    // 1/sqrt(σ² + eps): M2's chain (relative), halved by the square root, plus a few roundings.
    assert_close(what, &read(&saved.inv_std), &f32s(&inv), 0.0, CHAIN as f32);

    // y = γ·x̂ + β: x̂ carries the mean's error·inv_std and inv_std's relative error; the
    // products and the sum round at u of |γ·x̂| + |β|.
    let got_y = read(&y);
    for (i, (&g, &w)) in got_y.iter().zip(&want_y).enumerate() {
        let ch = channel(i, c, s);
        let xhat = (x64[i] - mean[ch]) * inv[ch];
        let gamma = case.gamma[ch].abs() as f64;
        let tol = gamma * (CHAIN * xhat.abs() + inv[ch] * mean_tol[ch])
            + 4.0 * U * (gamma * xhat.abs() + case.beta[ch].abs() as f64);
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what}: y[{i}] gpu {g} cpu {w} (tol {tol:e})"
        );
    }

    // Running statistics: the batch statistics' errors (scaled by the momentum) plus a few
    // roundings of the update; the unbiased variance as the biased one, relative.
    let mut want_rm = f64s(&case.running_mean);
    let mut want_rv = f64s(&case.running_var);
    cpu_running(&mut want_rm, &mean, cfg.momentum, 1.0);
    cpu_running(&mut want_rv, &var, cfg.momentum, n / (n - 1.0));
    let got_rm = f64s(&read(&rm));
    for ch in 0..c {
        let tol = mean_tol[ch] + 4.0 * U * (want_rm[ch].abs() + mean[ch].abs());
        assert!(
            (got_rm[ch] - want_rm[ch]).abs() <= tol,
            "{what}: running_mean[{ch}] gpu {} cpu {}",
            got_rm[ch],
            want_rm[ch]
        );
    }
    let rv_tol = (2.0 * CHAIN) as f32;
    assert_close(
        &format!("{what} running_var"),
        &read(&rv),
        &f32s(&want_rv),
        0.0,
        rv_tol,
    );
}

#[test]
fn batchnorm_train_matches_cpu_on_random_shapes() {
    let e = gpu!();
    for (i, shape) in random_shapes(30).iter().enumerate() {
        let case = Case::random(300 + i as u64, shape, 0.3, 2.0);
        train_matches_cpu(e, &case, &format!("train {shape:?}"));
    }
}

#[test]
fn batchnorm_variance_is_stable_at_a_large_offset() {
    let e = gpu!();
    // Mean 1000, std 1: Σx² − (Σx)²/n in f32 would lose all digits (1000² / 2^24 ≈ 0.06 per
    // value); the shifted Welford/Chan statistics must meet the same tolerances as at mean 0.
    for (i, shape) in [vec![128, 64, 7, 7], vec![2, 3, 5, 5], vec![513, 6]]
        .iter()
        .enumerate()
    {
        let case = Case::random(310 + i as u64, shape, 1000.0, 3f32.sqrt());
        train_matches_cpu(e, &case, &format!("offset 1000 {shape:?}"));
    }
}

#[test]
fn batchnorm_eval_matches_cpu_on_random_shapes() {
    let e = gpu!();
    let eps = 1e-5;
    for (i, shape) in random_shapes(31).iter().enumerate() {
        let case = Case::random(320 + i as u64, shape, -0.2, 1.0);
        let [x, gamma, beta, rm, rv] = case.upload(e);
        let y = bn::batchnorm_eval(&x, &gamma, &beta, &rm, &rv, eps).expect("eval");
        let params = [
            &case.gamma,
            &case.beta,
            &case.running_mean,
            &case.running_var,
        ]
        .map(|v| f64s(v));
        let [g, b, m, v] = params.each_ref().map(|v| v.as_slice());
        let want = cpu_normalize(&f64s(&case.x), shape, [g, b, m, v], eps);
        // A handful of f32 roundings of terms of size |γ·x̂| + |β| ≤ ~10: 2e-6 absolute + 1e-6.
        assert_close(
            &format!("eval {shape:?}"),
            &read(&y),
            &f32s(&want),
            2e-6,
            1e-6,
        );
        // Eval reads the running statistics and leaves them as they were.
        assert_eq!(read(&rm), case.running_mean);
        assert_eq!(read(&rv), case.running_var);
    }
}

/// GPU backward on `case` with upstream gradient `dy` against the twin.
fn backward_matches_cpu(e: &Engine, case: &Case, dy: &[f32], what: &str) {
    let cfg = BatchNormConfig::default();
    let [x, gamma, beta, rm, rv] = case.upload(e);
    let (_, saved) = bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &cfg).expect("train");
    let dy_t = upload(e, dy, &case.shape);
    let (dx, dgamma, dbeta) = bn::batchnorm_backward(&dy_t, &x, &gamma, &saved).expect("backward");
    let (x64, dy64) = (f64s(&case.x), f64s(dy));
    let (want_dx, want_dg, want_db) =
        cpu_backward(&dy64, &x64, &case.shape, &f64s(&case.gamma), cfg.eps);
    let (b, c, s) = dims(&case.shape);
    let n = (b * s) as f64;
    let (mean, var) = cpu_stats(&x64, &case.shape);
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + cfg.eps).sqrt()).collect();
    // Σ|dy| and Σ|dy·x̂| per channel: the magnitudes that bound the sums' rounding.
    let (mut abs_db, mut abs_dg) = (vec![0.0; c], vec![0.0; c]);
    for i in 0..x64.len() {
        let ch = channel(i, c, s);
        abs_db[ch] += dy64[i].abs();
        abs_dg[ch] += (dy64[i] * (x64[i] - mean[ch]) * inv[ch]).abs();
    }
    // dβ: an f32 sum in blocks (CHAIN of Σ|dy|). dγ: the same of Σ|dy·x̂|, plus inv_std's
    // error (CHAIN relative) and the mean's (≤ 2u·|μ| + CHAIN·σ, times inv_std·Σ|dy|).
    let (got_db, got_dg) = (f64s(&read(&dbeta)), f64s(&read(&dgamma)));
    let sd: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
    for ch in 0..c {
        let db_tol = CHAIN * abs_db[ch] + 1e-30;
        let mean_tol = 2.0 * U * mean[ch].abs() + CHAIN * sd[ch];
        let dg_tol = 2.0 * CHAIN * abs_dg[ch] + inv[ch] * mean_tol * abs_db[ch];
        let (db_err, dg_err) = (
            (got_db[ch] - want_db[ch]).abs(),
            (got_dg[ch] - want_dg[ch]).abs(),
        );
        assert!(
            db_err <= db_tol,
            "{what}: dβ[{ch}] gpu {} cpu {}",
            got_db[ch],
            want_db[ch]
        );
        assert!(
            dg_err <= dg_tol,
            "{what}: dγ[{ch}] gpu {} cpu {}",
            got_dg[ch],
            want_dg[ch]
        );
    }
    // dx = γ·inv_std·(dy − dβ/N − x̂·dγ/N): each term's error as above, scaled by |γ|·inv_std,
    // with (1 + |x̂|) for the mean's error inside x̂.
    let got = read(&dx);
    for (i, (&g, &w)) in got.iter().zip(&want_dx).enumerate() {
        let ch = channel(i, c, s);
        let xhat = (x64[i] - mean[ch]) * inv[ch];
        let scale = case.gamma[ch].abs() as f64 * inv[ch];
        let terms =
            dy64[i].abs() + (abs_db[ch] + (1.0 + xhat.abs()) * (abs_dg[ch] + abs_db[ch])) / n;
        let tol = scale * 2.0 * CHAIN * terms;
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what}: dx[{i}] gpu {g} cpu {w} (tol {tol:e})"
        );
    }
}

/// The batch norm fused with its ReLU gives exactly the unfused pair: y = relu(BN(x)) bit for
/// bit, and (dx, dγ, dβ) bit for bit those of the plain backward given the ReLU's masked dy
/// (the mask is the same select, the sums run over the same values in the same order).
#[test]
fn batchnorm_relu_equals_the_unfused_pair_bit_for_bit() {
    use latent::kernels::elementwise::{self as ew, Binary, Unary};
    let e = gpu!();
    let cfg = BatchNormConfig::default();
    let (mut cut, mut kept) = (0, 0);
    for (i, shape) in random_shapes(36).iter().enumerate() {
        let case = Case::random(360 + i as u64, shape, 0.2, 1.5);
        let dy = upload(
            e,
            &uniform(&mut rng(370 + i as u64), case.x.len(), -1.0, 1.0),
            shape,
        );
        let [x, gamma, beta, rm, rv] = case.upload(e);
        let (y, saved) = bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &cfg).unwrap();
        let relu = ew::unary(Unary::Relu, &y).unwrap();
        let masked = ew::binary(Binary::MaskPositive, &dy, &relu).unwrap();
        let (dx, dg, db) = bn::batchnorm_backward(&masked, &x, &gamma, &saved).unwrap();
        let [x, gamma, beta, rm, rv] = case.upload(e);
        let (fused, fsaved) = bn::batchnorm_relu_train(&x, &gamma, &beta, &rm, &rv, &cfg).unwrap();
        let (fdx, fdg, fdb) =
            bn::batchnorm_relu_backward(&dy, &fused, &x, &gamma, &fsaved).unwrap();
        let what = format!("{shape:?}");
        let bits = |t: &Tensor| read(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        cut += read(&fused).iter().filter(|&&v| v == 0.0).count();
        kept += read(&fused).iter().filter(|&&v| v > 0.0).count();
        assert_eq!(bits(&fused), bits(&relu), "y {what}");
        assert_eq!(bits(&fdx), bits(&dx), "dx {what}");
        assert_eq!(bits(&fdg), bits(&dg), "dγ {what}");
        assert_eq!(bits(&fdb), bits(&db), "dβ {what}");
    }
    // Both sides of the ReLU are exercised, in quantity.
    assert!(cut > 100_000 && kept > 100_000, "{cut} cut, {kept} kept");
}

#[test]
fn batchnorm_relu_backward_refuses_an_output_of_another_shape() {
    let e = gpu!();
    let case = Case::random(380, &[3, 2, 2, 3], 0.0, 1.0);
    let [x, gamma, beta, rm, rv] = case.upload(e);
    let cfg = BatchNormConfig::default();
    let (y, saved) = bn::batchnorm_relu_train(&x, &gamma, &beta, &rm, &rv, &cfg).unwrap();
    let short = Tensor::zeros(e, &[3, 2, 2, 2], DType::F32).unwrap();
    let err = bn::batchnorm_relu_backward(&y, &short, &x, &gamma, &saved);
    assert_eq!(error_kind(err), "ShapeMismatch");
}

#[test]
fn batchnorm_backward_matches_cpu_on_random_shapes() {
    let e = gpu!();
    for (i, shape) in random_shapes(32).iter().enumerate() {
        let case = Case::random(330 + i as u64, shape, 0.5, 1.5);
        let dy = uniform(&mut rng(340 + i as u64), case.x.len(), -1.0, 1.0);
        backward_matches_cpu(e, &case, &dy, &format!("backward {shape:?}"));
    }
    // A large offset: x − mean is taken before any product, so dx keeps its digits.
    let case = Case::random(350, &[128, 64, 7, 7], 1000.0, 1.7);
    let dy = uniform(&mut rng(351), case.x.len(), -1.0, 1.0);
    backward_matches_cpu(e, &case, &dy, "backward offset 1000");
}

#[test]
fn batchnorm_gradients_match_finite_differences() {
    let e = gpu!();
    let eps = BatchNormConfig::default().eps;
    for (i, shape) in [
        vec![3, 2, 2, 3],
        vec![2, 3, 3, 3],
        vec![4, 5],
        vec![2, 1, 1, 5],
    ]
    .iter()
    .enumerate()
    {
        let case = Case::random(360 + i as u64, shape, 0.2, 1.0);
        let w = uniform(&mut rng(370 + i as u64), case.x.len(), -1.0, 1.0);
        let w64 = f64s(&w);
        // loss = Σ w ⊙ y of the twin's training forward, as a function of (x, γ, β).
        let loss = |v: &[Vec<f64>]| -> f64 {
            let (y, _, _) = cpu_train(&v[0], shape, &v[1], &v[2], eps);
            y.iter().zip(&w64).map(|(y, w)| y * w).sum()
        };
        let inputs = [&case.x, &case.gamma, &case.beta].map(|v| f64s(v));
        let fd = fd_gradients(loss, &inputs);
        // The twin's analytic backward is the spec; it must agree with the finite differences.
        let (dx, dg, db) = cpu_backward(&w64, &inputs[0], shape, &inputs[1], eps);
        for (name, got, want) in [
            ("dx", &dx, &fd[0]),
            ("dγ", &dg, &fd[1]),
            ("dβ", &db, &fd[2]),
        ] {
            assert_matches_fd(&format!("twin {name} {shape:?}"), &f32s(got), want);
        }
        let [x, gamma, beta, rm, rv] = case.upload(e);
        let (_, saved) =
            bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &BatchNormConfig::default()).unwrap();
        let (dx, dg, db) =
            bn::batchnorm_backward(&upload(e, &w, shape), &x, &gamma, &saved).unwrap();
        for (name, got, want) in [
            ("dx", &dx, &fd[0]),
            ("dγ", &dg, &fd[1]),
            ("dβ", &db, &fd[2]),
        ] {
            assert_matches_fd(&format!("gpu {name} {shape:?}"), &read(got), want);
        }
    }
}

#[test]
fn batchnorm_backward_accumulates_into_gradient_buffers() {
    let e = gpu!();
    let case = Case::random(380, &[4, 3, 5, 5], 0.0, 1.0);
    let dy = uniform(&mut rng(381), case.x.len(), -1.0, 1.0);
    let [x, gamma, beta, rm, rv] = case.upload(e);
    let (_, saved) =
        bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &BatchNormConfig::default()).unwrap();
    let dy = upload(e, &dy, &case.shape);
    let (dx, dg, db) = bn::batchnorm_backward(&dy, &x, &gamma, &saved).unwrap();
    let prior = [0.25f32, -1.0, 3.0];
    let (acc_g, acc_b) = (upload(e, &prior, &[3]), upload(e, &prior, &[3]));
    let dx2 = bn::batchnorm_backward_into(&dy, &x, &gamma, &saved, &acc_g, &acc_b, true).unwrap();
    let plus = |v: Vec<f32>| -> Vec<f32> { v.iter().zip(&prior).map(|(a, b)| a + b).collect() };
    // The same kernels on the same data: bit-identical sums, then one f32 addition.
    assert_eq!(read(&acc_g), plus(read(&dg)));
    assert_eq!(read(&acc_b), plus(read(&db)));
    assert_eq!(read(&dx2), read(&dx));
    // Without accumulate the buffers are overwritten.
    bn::batchnorm_backward_into(&dy, &x, &gamma, &saved, &acc_g, &acc_b, false).unwrap();
    assert_eq!(read(&acc_g), read(&dg));
    assert_eq!(read(&acc_b), read(&db));
}

#[test]
fn running_statistics_follow_pytorch_over_several_steps() {
    let e = gpu!();
    // Known answer (torch.nn.BatchNorm1d(1), one step on [[1], [2], [3], [4]]): batch mean 2.5,
    // unbiased variance 5/3, so running_mean = 0.25 and running_var = 0.9 + 0.1·5/3.
    let x = upload(e, &[1.0f32, 2.0, 3.0, 4.0], &[4, 1]);
    let (one, zero) = (upload(e, &[1.0f32], &[1]), upload(e, &[0.0f32], &[1]));
    let (rm, rv) = (upload(e, &[0.0f32], &[1]), upload(e, &[1.0f32], &[1]));
    let cfg = BatchNormConfig::default();
    let (y, saved) = bn::batchnorm_train(&x, &one, &zero, &rm, &rv, &cfg).unwrap();
    assert_close("running_mean", &read(&rm), &[0.25], 0.0, 1e-7);
    assert_close(
        "running_var",
        &read(&rv),
        &[(0.9 + 0.1 * 5.0 / 3.0) as f32],
        0.0,
        // The unbiasing, the product and the sum each round: a few ulp.
        3e-7,
    );
    let inv = 1.0 / (1.25f64 + 1e-5).sqrt();
    assert_close("inv_std", &read(&saved.inv_std), &[inv as f32], 0.0, 1e-6);
    let want: Vec<f32> = [-1.5, -0.5, 0.5, 1.5]
        .iter()
        .map(|v| (v * inv) as f32)
        .collect();
    assert_close("y", &read(&y), &want, 0.0, 1e-6);

    // Five steps with momentum 0.3 on fresh batches: the twin's recurrence step after step.
    let shape = [6, 3, 5, 3];
    let cfg = BatchNormConfig {
        eps: 1e-3,
        momentum: 0.3,
    };
    let case = Case::random(390, &shape, 2.0, 1.0);
    let [_, gamma, beta, rm, rv] = case.upload(e);
    let (mut want_rm, mut want_rv) = (f64s(&case.running_mean), f64s(&case.running_var));
    let n = (6 * 15) as f64;
    for step in 0..5 {
        let xs = uniform(
            &mut rng(391 + step),
            case.x.len(),
            step as f32 - 1.0,
            3.0 + step as f32,
        );
        let x = upload(e, &xs, &shape);
        bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &cfg).unwrap();
        let (mean, var) = cpu_stats(&f64s(&xs), &shape);
        cpu_running(&mut want_rm, &mean, cfg.momentum, 1.0);
        cpu_running(&mut want_rv, &var, cfg.momentum, n / (n - 1.0));
    }
    // Five rounded updates of values known to ~1e-6 relative.
    assert_close(
        "running_mean after 5",
        &read(&rm),
        &f32s(&want_rm),
        1e-6,
        1e-5,
    );
    assert_close(
        "running_var after 5",
        &read(&rv),
        &f32s(&want_rv),
        1e-6,
        1e-5,
    );
}

#[test]
fn batchnorm_refuses_bad_shapes_with_typed_errors() {
    let e = gpu!();
    let t = |shape: &[usize]| Tensor::zeros(e, shape, DType::F32).unwrap();
    let (x, c4, c3) = (t(&[2, 4, 3, 3]), t(&[4]), t(&[3]));
    let cfg = BatchNormConfig::default();
    // Fresh running buffers of the given lengths (they are written in place).
    let train = |x: &Tensor, g: &Tensor, b: &Tensor, m: usize, v: usize, cfg: &BatchNormConfig| {
        error_kind(bn::batchnorm_train(x, g, b, &t(&[m]), &t(&[v]), cfg))
    };
    assert_eq!(train(&x, &c4, &c4, 4, 4, &cfg), "Ok");
    assert_eq!(train(&x, &c3, &c4, 4, 4, &cfg), "ShapeMismatch");
    assert_eq!(train(&x, &c4, &c3, 4, 4, &cfg), "ShapeMismatch");
    assert_eq!(train(&x, &c4, &c4, 3, 4, &cfg), "ShapeMismatch");
    assert_eq!(train(&x, &c4, &c4, 4, 5, &cfg), "ShapeMismatch");
    assert_eq!(train(&t(&[2, 4, 3]), &c4, &c4, 4, 4, &cfg), "BadInput");
    assert_eq!(train(&t(&[4]), &c4, &c4, 4, 4, &cfg), "BadInput");
    // One value per channel: no variance to normalise with (PyTorch refuses it too).
    assert_eq!(train(&t(&[1, 4]), &c4, &c4, 4, 4, &cfg), "BadInput");
    assert_eq!(train(&t(&[1, 4, 1, 1]), &c4, &c4, 4, 4, &cfg), "BadInput");
    let bad_momentum = BatchNormConfig {
        momentum: 1.5,
        ..cfg
    };
    assert_eq!(train(&x, &c4, &c4, 4, 4, &bad_momentum), "BadInput");
    let u = Tensor::zeros(e, &[2, 4, 3, 3], DType::U32).unwrap();
    assert_eq!(train(&u, &c4, &c4, 4, 4, &cfg), "DTypeMismatch");
    // The running buffers are updated in place: one tensor for both is refused.
    let r = t(&[4]);
    assert_eq!(
        error_kind(bn::batchnorm_train(&x, &c4, &c4, &r, &r, &cfg)),
        "Binding"
    );

    // Eval takes one value per channel, but not wrong lengths.
    let eval = |x: &Tensor, g: &Tensor| error_kind(bn::batchnorm_eval(x, g, &c4, &c4, &c4, 1e-5));
    assert_eq!(eval(&t(&[1, 4]), &c4), "Ok");
    assert_eq!(eval(&t(&[1, 4]), &c3), "ShapeMismatch");
    assert_eq!(eval(&t(&[2, 2, 4]), &c4), "BadInput");

    let saved = BatchNormSaved {
        mean: t(&[4]),
        inv_std: t(&[4]),
    };
    let back = |dy: &Tensor, g: &Tensor, s: &BatchNormSaved| {
        error_kind(bn::batchnorm_backward(dy, &x, g, s))
    };
    assert_eq!(back(&t(&[2, 4, 3, 3]), &c4, &saved), "Ok");
    assert_eq!(back(&t(&[2, 4, 9]), &c4, &saved), "ShapeMismatch");
    assert_eq!(back(&t(&[2, 4, 3, 3]), &c3, &saved), "ShapeMismatch");
    let short = BatchNormSaved {
        mean: t(&[3]),
        inv_std: t(&[4]),
    };
    assert_eq!(back(&t(&[2, 4, 3, 3]), &c4, &short), "ShapeMismatch");
}

/// The eval backward on `case` with upstream gradient `dy` against the twin; the saving
/// forward must equal the plain eval forward bit for bit.
fn eval_backward_matches_cpu(e: &Engine, case: &Case, dy: &[f32], what: &str) {
    let eps = BatchNormConfig::default().eps;
    let [x, gamma, beta, rm, rv] = case.upload(e);
    let (y, saved) = bn::batchnorm_eval_saving(&x, &gamma, &beta, &rm, &rv, eps).expect("eval");
    let plain = bn::batchnorm_eval(&x, &gamma, &beta, &rm, &rv, eps).expect("eval");
    assert_eq!(read(&y), read(&plain), "{what}: saving forward");
    let dy_t = upload(e, dy, &case.shape);
    let dx = bn::batchnorm_eval_backward_input(&dy_t, &saved).expect("dx");
    let c = [case.gamma.len()];
    let (dgamma, dbeta) = (
        upload(e, &vec![0.0; c[0]], &c),
        upload(e, &vec![0.0; c[0]], &c),
    );
    bn::batchnorm_eval_backward_params_into(&dy_t, &x, &gamma, &saved, &dgamma, &dbeta, false)
        .expect("dγ, dβ");
    let (x64, dy64) = (f64s(&case.x), f64s(dy));
    let [g64, m64, v64] = [&case.gamma, &case.running_mean, &case.running_var].map(|v| f64s(v));
    let (want_dx, want_dg, want_db) =
        cpu_eval_backward(&dy64, &x64, &case.shape, [&g64, &m64, &v64], eps);
    // dx = slope·dy: the slope's square root, division and the product, a few ulp each.
    assert_close(
        &format!("{what} dx"),
        &read(&dx),
        &f32s(&want_dx),
        0.0,
        1e-6,
    );
    // dβ and dγ: f32 block sums of dy and dy·(x − mean) (CHAIN of their Σ|·|), and dγ's final
    // product by 1/sqrt(var + eps) (a few ulp more).
    let (b, ch, s) = dims(&case.shape);
    let (mut abs_db, mut abs_dg) = (vec![0.0; ch], vec![0.0; ch]);
    for i in 0..b * ch * s {
        let k = channel(i, ch, s);
        abs_db[k] += dy64[i].abs();
        abs_dg[k] += (dy64[i] * (x64[i] - m64[k])).abs() / (v64[k] + eps).sqrt();
    }
    let (got_db, got_dg) = (f64s(&read(&dbeta)), f64s(&read(&dgamma)));
    for k in 0..ch {
        let (db_tol, dg_tol) = (CHAIN * abs_db[k] + 1e-30, 2.0 * CHAIN * abs_dg[k] + 1e-30);
        let (db, dg) = (got_db[k], got_dg[k]);
        assert!(
            (db - want_db[k]).abs() <= db_tol,
            "{what}: dβ[{k}] gpu {db} cpu {}",
            want_db[k]
        );
        assert!(
            (dg - want_dg[k]).abs() <= dg_tol,
            "{what}: dγ[{k}] gpu {dg} cpu {}",
            want_dg[k]
        );
    }
}

#[test]
fn batchnorm_eval_backward_matches_cpu_on_random_shapes() {
    let e = gpu!();
    for (i, shape) in random_shapes(33).iter().enumerate() {
        let case = Case::random(400 + i as u64, shape, 0.5, 1.5);
        let dy = uniform(&mut rng(420 + i as u64), case.x.len(), -1.0, 1.0);
        eval_backward_matches_cpu(e, &case, &dy, &format!("eval backward {shape:?}"));
    }
    // A large offset: x − running mean is taken before any product (as in the forward).
    let mut case = Case::random(440, &[128, 64, 7, 7], 1000.0, 1.7);
    case.running_mean.iter_mut().for_each(|m| *m += 1000.0);
    let dy = uniform(&mut rng(441), case.x.len(), -1.0, 1.0);
    eval_backward_matches_cpu(e, &case, &dy, "eval backward offset 1000");
}

#[test]
fn batchnorm_eval_backward_accumulates_and_keeps_the_statistics_it_read() {
    let e = gpu!();
    let eps = BatchNormConfig::default().eps;
    let case = Case::random(450, &[4, 3, 5, 5], 0.0, 1.0);
    let dy = upload(
        e,
        &uniform(&mut rng(451), case.x.len(), -1.0, 1.0),
        &case.shape,
    );
    let [x, gamma, beta, rm, rv] = case.upload(e);
    let (_, saved) = bn::batchnorm_eval_saving(&x, &gamma, &beta, &rm, &rv, eps).unwrap();
    let grads = |acc_g: &Tensor, acc_b: &Tensor, accumulate: bool| {
        bn::batchnorm_eval_backward_params_into(&dy, &x, &gamma, &saved, acc_g, acc_b, accumulate)
            .unwrap()
    };
    let (dg, db) = (upload(e, &[0.0; 3], &[3]), upload(e, &[0.0; 3], &[3]));
    grads(&dg, &db, false);
    let dx = read(&bn::batchnorm_eval_backward_input(&dy, &saved).unwrap());
    // A training step between forward and backward updates the running statistics in place;
    // the gradients of the earlier eval forward must not change.
    bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &BatchNormConfig::default()).unwrap();
    assert_ne!(
        read(&rm),
        case.running_mean,
        "the training step moved the mean"
    );
    assert_eq!(
        read(&bn::batchnorm_eval_backward_input(&dy, &saved).unwrap()),
        dx
    );
    let prior = [0.25f32, -1.0, 3.0];
    let (acc_g, acc_b) = (upload(e, &prior, &[3]), upload(e, &prior, &[3]));
    grads(&acc_g, &acc_b, true);
    let plus = |v: Vec<f32>| -> Vec<f32> { v.iter().zip(&prior).map(|(a, b)| a + b).collect() };
    // The same kernels on the same data: bit-identical sums, then one f32 addition.
    assert_eq!(read(&acc_g), plus(read(&dg)));
    assert_eq!(read(&acc_b), plus(read(&db)));
    grads(&acc_g, &acc_b, false);
    assert_eq!(read(&acc_g), read(&dg), "without accumulate: overwritten");
    assert_eq!(read(&acc_b), read(&db));
}

#[test]
fn batchnorm_eval_backward_refuses_bad_shapes_with_typed_errors() {
    let e = gpu!();
    let t = |shape: &[usize]| Tensor::zeros(e, shape, DType::F32).unwrap();
    let (x, c4) = (t(&[2, 4, 3, 3]), t(&[4]));
    let (_, saved) = bn::batchnorm_eval_saving(&x, &c4, &c4, &c4, &c4, 1e-5).unwrap();
    let input = |dy: &Tensor| error_kind(bn::batchnorm_eval_backward_input(dy, &saved));
    assert_eq!(input(&t(&[2, 4, 3, 3])), "Ok");
    assert_eq!(
        input(&t(&[5, 4])),
        "Ok",
        "any batch and pixels of 4 channels"
    );
    assert_eq!(input(&t(&[2, 3, 3, 3])), "ShapeMismatch");
    assert_eq!(input(&t(&[2, 4, 9])), "BadInput");
    let params = |dy: &Tensor, dg: &Tensor| {
        error_kind(bn::batchnorm_eval_backward_params_into(
            dy,
            &x,
            &c4,
            &saved,
            dg,
            &t(&[4]),
            false,
        ))
    };
    assert_eq!(params(&t(&[2, 4, 3, 3]), &t(&[4])), "Ok");
    assert_eq!(params(&t(&[2, 4, 9]), &t(&[4])), "ShapeMismatch");
    assert_eq!(params(&t(&[2, 4, 3, 3]), &t(&[3])), "ShapeMismatch");
    let u = Tensor::zeros(e, &[2, 4, 3, 3], DType::U32).unwrap();
    assert_eq!(params(&u, &t(&[4])), "DTypeMismatch");
    assert_eq!(
        error_kind(bn::batchnorm_eval_saving(&x, &c4, &c4, &t(&[3]), &c4, 1e-5)),
        "ShapeMismatch"
    );
    assert_eq!(
        error_kind(bn::batchnorm_eval_saving(&x, &c4, &c4, &c4, &c4, -1.0)),
        "BadInput"
    );
}
