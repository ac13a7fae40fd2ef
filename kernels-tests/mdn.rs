//! CPU twin of `shaders/mdn.wgsl` (f64: the spec), GPU-vs-CPU comparisons on awkward shapes,
//! and finite-difference checks of the tape op's gradient. Run with `cargo test --release mdn`.

use crate::{assert_close, assert_matches_fd, awkward, fd_gradients, gpu, rng, uniform};
use latent::kernels::mdn::{MdnLoss, mdn_backward, mdn_forward};
use latent::tape::{Param, Tape};
use latent::{Engine, Tensor};

// ---- CPU twin -------------------------------------------------------------------------------

/// Per-row loss and responsibilities of targets `z` `[B, D]` under means `[B, K, D]` and
/// logits `[B, K]`, components N(μ_k, σ²I).
pub fn cpu_mdn(
    means: &[f64],
    logits: &[f64],
    z: &[f64],
    (k, d): (usize, usize),
    sigma: f64,
    mode: MdnLoss,
) -> (Vec<f64>, Vec<f64>) {
    let rows = z.len() / d;
    let (mut loss, mut resp) = (Vec::new(), Vec::new());
    for b in 0..rows {
        let l = &logits[b * k..(b + 1) * k];
        let lse = logsumexp(l);
        let dist: Vec<f64> = (0..k)
            .map(|c| {
                let m = &means[(b * k + c) * d..(b * k + c + 1) * d];
                let zz = &z[b * d..(b + 1) * d];
                m.iter().zip(zz).map(|(m, z)| (z - m).powi(2)).sum::<f64>() / (2.0 * sigma * sigma)
            })
            .collect();
        match mode {
            MdnLoss::Closest => {
                let best = (0..k).fold(0, |a, c| if dist[c] < dist[a] { c } else { a });
                loss.push(dist[best] - (l[best] - lse));
                resp.extend((0..k).map(|c| (c == best) as u8 as f64));
            }
            MdnLoss::Likelihood => {
                let a: Vec<f64> = (0..k).map(|c| l[c] - lse - dist[c]).collect();
                let total = logsumexp(&a);
                let norm = 0.5 * d as f64 * (2.0 * std::f64::consts::PI * sigma * sigma).ln();
                loss.push(norm - total);
                resp.extend(a.iter().map(|v| (v - total).exp()));
            }
        }
    }
    (loss, resp)
}

fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::MIN, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Gradients of Σ_b g_b·loss_b: dμ_k = g·r_k·(μ_k − z)/σ², dl_k = g·(π_k − r_k).
fn cpu_mdn_backward(
    means: &[f64],
    logits: &[f64],
    z: &[f64],
    resp: &[f64],
    g: &[f64],
    (k, d): (usize, usize),
    sigma: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut dm, mut dl) = (vec![0.0; means.len()], vec![0.0; logits.len()]);
    for (b, &w) in g.iter().enumerate() {
        let lse = logsumexp(&logits[b * k..(b + 1) * k]);
        for c in 0..k {
            let r = resp[b * k + c];
            dl[b * k + c] = w * ((logits[b * k + c] - lse).exp() - r);
            for j in 0..d {
                let i = (b * k + c) * d + j;
                dm[i] = w * r * (means[i] - z[b * d + j]) / (sigma * sigma);
            }
        }
    }
    (dm, dl)
}

// ---- tests ----------------------------------------------------------------------------------

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn tensor(e: &Engine, v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(e, v, shape).unwrap()
}

/// Forward (loss, responsibilities) and backward of both modes against the twin on awkward
/// shapes, up to K = 8 components as in the paper. Tolerance 1e-4 relative: a row sums D
/// squares and takes a few exp/log in f32.
#[test]
fn mdn_loss_matches_cpu_on_awkward_shapes() {
    let e = gpu!();
    let mut r = rng(41);
    for case in 0..8 {
        let (b, k, d) = (awkward(&mut r, 130), 1 + case % 8, awkward(&mut r, 33));
        let sigma = [0.1f32, 0.5, 1.0, 2.0][case % 4];
        let means = uniform(&mut r, b * k * d, -1.0, 1.0);
        let logits = uniform(&mut r, b * k, -3.0, 3.0);
        let z = uniform(&mut r, b * d, -1.0, 1.0);
        let g = uniform(&mut r, b, -1.0, 1.0);
        let (tm, tl, tz, tg) = (
            tensor(e, &means, &[b, k, d]),
            tensor(e, &logits, &[b, k]),
            tensor(e, &z, &[b, d]),
            tensor(e, &g, &[b]),
        );
        for mode in [MdnLoss::Closest, MdnLoss::Likelihood] {
            let what = format!("mdn {mode:?} B={b} K={k} D={d} σ={sigma}");
            let (want, want_r) = cpu_mdn(
                &f64s(&means),
                &f64s(&logits),
                &f64s(&z),
                (k, d),
                sigma as f64,
                mode,
            );
            let (loss, resp) = mdn_forward(&tm, &tl, &tz, sigma, mode).unwrap();
            let loss = loss.to_vec::<f32>().unwrap();
            assert_close(&format!("{what} loss"), &loss, &f32s(&want), 1e-3, 1e-4);
            let resp_v = resp.to_vec::<f32>().unwrap();
            assert_close(&format!("{what} resp"), &resp_v, &f32s(&want_r), 1e-5, 1e-4);
            let (dm, dl) = mdn_backward(&tm, &tl, &tz, &resp, &tg, sigma).unwrap();
            let (wm, wl) = cpu_mdn_backward(
                &f64s(&means),
                &f64s(&logits),
                &f64s(&z),
                &want_r,
                &f64s(&g),
                (k, d),
                sigma as f64,
            );
            let dm = dm.to_vec::<f32>().unwrap();
            assert_close(&format!("{what} dmeans"), &dm, &f32s(&wm), 1e-4, 1e-4);
            let dl = dl.to_vec::<f32>().unwrap();
            assert_close(&format!("{what} dlogits"), &dl, &f32s(&wl), 1e-5, 1e-4);
        }
    }
}

/// The tape op's gradients of Σ_b w_b·loss_b against central differences of the twin, in both
/// modes (means placed apart so that no finite-difference step crosses a closest-component tie).
#[test]
fn mdn_loss_gradients_match_finite_differences() {
    let e = gpu!();
    let (b, k, d, sigma) = (5, 8, 3, 0.7f32);
    let mut r = rng(7);
    let means = uniform(&mut r, b * k * d, -2.0, 2.0);
    let logits = uniform(&mut r, b * k, -2.0, 2.0);
    let z = uniform(&mut r, b * d, -1.5, 1.5);
    let w = uniform(&mut r, b, 0.5, 1.5);
    for mode in [MdnLoss::Closest, MdnLoss::Likelihood] {
        let pm = Param::new("means", tensor(e, &means, &[b, k, d])).unwrap();
        let pl = Param::new("logits", tensor(e, &logits, &[b, k])).unwrap();
        let tape = Tape::new(e);
        let loss = tape
            .param(&pm)
            .mdn_loss(&tape.param(&pl), &tensor(e, &z, &[b, d]), sigma, mode)
            .unwrap();
        let weighted = loss.mul(&tape.input(&tensor(e, &w, &[b]))).unwrap();
        tape.backward(&weighted.sum().unwrap()).unwrap();
        let f = |x: &[Vec<f64>]| {
            let (l, _) = cpu_mdn(&x[0], &x[1], &f64s(&z), (k, d), sigma as f64, mode);
            l.iter().zip(&w).map(|(l, &w)| l * w as f64).sum::<f64>()
        };
        let fd = fd_gradients(f, &[f64s(&means), f64s(&logits)]);
        let what = format!("mdn {mode:?}");
        assert_matches_fd(&what, &pm.grad().to_vec::<f32>().unwrap(), &fd[0]);
        assert_matches_fd(&what, &pl.grad().to_vec::<f32>().unwrap(), &fd[1]);
    }
}

/// Bad shapes and a non-positive σ are typed errors, not dispatches.
#[test]
fn mdn_loss_rejects_bad_shapes_and_sigma() {
    let e = gpu!();
    let m = tensor(e, &[0.0; 12], &[2, 3, 2]);
    let l = tensor(e, &[0.0; 6], &[2, 3]);
    let z = tensor(e, &[0.0; 4], &[2, 2]);
    let bad_z = tensor(e, &[0.0; 6], &[2, 3]);
    assert!(mdn_forward(&m, &l, &bad_z, 1.0, MdnLoss::Closest).is_err());
    assert!(mdn_forward(&m, &l, &z, 0.0, MdnLoss::Closest).is_err());
    assert!(mdn_forward(&m, &l, &z, f32::NAN, MdnLoss::Likelihood).is_err());
    assert!(mdn_forward(&l, &l, &z, 1.0, MdnLoss::Closest).is_err());
}
