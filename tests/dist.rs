//! The IWAE bound against a CPU log-sum-exp in f64, including weights far from 1, and its log
//! weights in log space at log σ² = −120 (where σ² underflows). `cargo test --release --test dist`.

mod common;

use latent::data::Split;
use latent::kernels::{kl, random};
use latent::models::likelihood;
use latent::models::vae::{Autoencoder, Vae, VaeConfig};
use latent::nn::Module;
use latent::{Error, Tensor, dist};

/// A log variance far below −88, where exp(log σ²) is 0 in f32 and exp(−log σ²) is ∞.
const TINY_LOGVAR: f32 = -120.0;

/// −log (1/k) Σ_j exp(log_w[j]) in f64, shifted by the maximum.
fn cpu_iwae_nll(log_w: &[f64]) -> f64 {
    let m = log_w.iter().fold(f64::MIN, |a, &v| a.max(v));
    (log_w.len() as f64).ln() - m - log_w.iter().map(|&v| (v - m).exp()).sum::<f64>().ln()
}

/// log N(v; 0, I) summed over a row, in f64.
fn cpu_log_std_normal(v: &[f64]) -> f64 {
    let log_2pi = (2.0 * std::f64::consts::PI).ln();
    v.iter().map(|v| -0.5 * (log_2pi + v * v)).sum()
}

/// log q(z|x) of z = μ + σ·ε summed over a row, in f64: −½ Σ (log 2π + log σ² + ε²). Even f64
/// cannot take the density form here: μ + e^−60·ε rounds to μ, so (z − μ)/σ would be 0.
fn cpu_log_q(lv: f64, eps: &[f64]) -> f64 {
    let log_2pi = (2.0 * std::f64::consts::PI).ln();
    eps.iter().map(|e| -0.5 * (log_2pi + lv + e * e)).sum()
}

#[test]
fn iwae_log_weights_match_a_cpu_twin_at_log_variance_minus_120() {
    let Some(e) = common::engine() else { return };
    let (images, k, d) = (2, 3, 5);
    let n = images * k;
    let mu: Vec<f32> = (0..n * d)
        .map(|i| 0.3 * ((i * 7) % 11) as f32 - 1.4)
        .collect();
    let eps: Vec<f32> = (0..n * d)
        .map(|i| 0.25 * ((i * 5) % 13) as f32 - 1.5)
        .collect();
    let nll_x: Vec<f32> = (0..n).map(|r| 180.0 + 3.0 * r as f32).collect();
    let t = |v: &[f32], s: &[usize]| Tensor::from_slice(e, v, s).unwrap();
    let (mu_t, eps_t, lv_t) = (
        t(&mu, &[n, d]),
        t(&eps, &[n, d]),
        t(&vec![TINY_LOGVAR; n * d], &[n, d]),
    );
    let z = kl::reparameterize(&mu_t, &lv_t, &eps_t).unwrap();
    let log_w = dist::iwae_log_weights(&t(&nll_x, &[n]), &z, &lv_t, &eps_t).unwrap();
    let nll = dist::iwae_nll(&log_w.reshape(&[images, k]).unwrap()).unwrap();
    let (log_w, nll) = (log_w.to_vec::<f32>().unwrap(), nll.to_vec::<f32>().unwrap());

    // The twin: z = μ + σ·ε and both densities in f64, log 2π terms and all.
    let sigma = (0.5 * TINY_LOGVAR as f64).exp();
    let mut want_w = Vec::with_capacity(n);
    for r in 0..n {
        let row =
            |v: &[f32]| -> Vec<f64> { v[r * d..(r + 1) * d].iter().map(|&x| x as f64).collect() };
        let (m, ep) = (row(&mu), row(&eps));
        let zr: Vec<f64> = m.iter().zip(&ep).map(|(m, e)| m + sigma * e).collect();
        let log_q = cpu_log_q(TINY_LOGVAR as f64, &ep);
        want_w.push(-(nll_x[r] as f64) + cpu_log_std_normal(&zr) - log_q);
    }
    // Terms of about 120 per unit summed over 5 units in f32: a few ulps of 600 (6e-5 each).
    for (r, (&g, &w)) in log_w.iter().zip(&want_w).enumerate() {
        assert!(g.is_finite(), "log w of row {r} is {g}");
        assert!((g as f64 - w).abs() < 1e-3, "log w of row {r}: {g} vs {w}");
    }
    for (i, &g) in nll.iter().enumerate() {
        let want = cpu_iwae_nll(&want_w[i * k..(i + 1) * k]);
        assert!(
            (g as f64 - want).abs() < 1e-3,
            "image {i}: IWAE NLL {g} vs {want}"
        );
    }
}

#[test]
fn the_iwae_of_a_vae_stays_finite_when_log_variance_is_minus_120() {
    let Some(e) = common::engine() else { return };
    let config = VaeConfig {
        input: 16,
        hidden: vec![8],
        latent: 3,
        ..VaeConfig::default()
    };
    let model = Vae::new(e, config, 5).unwrap();
    // The log-variance head outputs −120 for every input: weights 0, bias −120.
    for p in model.params() {
        let v = match p.name() {
            "encoder.logvar.weight" => 0.0,
            "encoder.logvar.bias" => TINY_LOGVAR,
            _ => continue,
        };
        p.value()
            .write_from_slice(&vec![v; p.value().numel()])
            .unwrap();
    }
    let (images, k, seed) = (3, 4, 9);
    let pixels: Vec<f32> = (0..images * 16)
        .map(|i| ((i * 3) % 5) as f32 / 4.0)
        .collect();
    let split = Split::new(pixels.clone(), vec![0; images], 4, 4).unwrap();
    let got = likelihood::iwae(&model, &split, seed, k).unwrap();
    assert!(got.is_finite(), "IWAE NLL {got}");

    // The twin: σ·ε ≈ 1e-26 vanishes beside μ in f32, so every z_j is μ and p(x|z_j) is the
    // decoder's mean image at μ; ε enters log q alone, drawn as `iwae` draws it (one chunk,
    // stream `seed`, offset 0, row i·k + j).
    let x = Tensor::from_slice(e, &pixels, &[images, 16]).unwrap();
    let mu = model.encode_means(&x, None).unwrap();
    let p = model
        .mean_images(&mu, None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let mu = mu.to_vec::<f32>().unwrap();
    let eps = random::normal(e, &[images * k, 3], seed, 0)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let mut want = 0.0;
    for i in 0..images {
        let bce: f64 = (0..16)
            .map(|j| {
                let (x, p) = (pixels[i * 16 + j] as f64, p[i * 16 + j] as f64);
                -(x * p.ln() + (1.0 - x) * (1.0 - p).ln())
            })
            .sum();
        let m: Vec<f64> = mu[i * 3..(i + 1) * 3].iter().map(|&v| v as f64).collect();
        let log_w: Vec<f64> = (0..k)
            .map(|j| {
                let ep: Vec<f64> = eps[(i * k + j) * 3..(i * k + j + 1) * 3]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                -bce + cpu_log_std_normal(&m) - cpu_log_q(TINY_LOGVAR as f64, &ep)
            })
            .collect();
        want += cpu_iwae_nll(&log_w) / images as f64;
    }
    // log q ≈ 180 nats in f32 and the BCE from f32 sigmoids: 1e-3 relative covers both.
    assert!(
        (got - want).abs() < 1e-3 * want.abs(),
        "IWAE NLL {got} vs twin {want}"
    );
}

#[test]
fn iwae_nll_matches_a_stable_cpu_log_sum_exp() {
    let Some(e) = common::engine() else { return };
    let (b, k) = (5, 100);
    // Log weights around −250 nats (a VAE's scale): exp would underflow without the shift.
    let w: Vec<f32> = (0..b * k)
        .map(|i| -250.0 + ((i * 37) % 101) as f32 * 0.05 - (i / k) as f32)
        .collect();
    let got = dist::iwae_nll(&Tensor::from_slice(e, &w, &[b, k]).unwrap())
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (r, g) in got.iter().enumerate() {
        let row = &w[r * k..(r + 1) * k];
        let m = row.iter().fold(f64::MIN, |a, &v| a.max(v as f64));
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        let want = (k as f64).ln() - lse;
        // f32 at magnitude 250: a few ulps (≈ 3e-5 each) from exp, log and the sum.
        assert!((*g as f64 - want).abs() < 2e-4, "row {r}: {g} vs {want}");
    }
    let one = Tensor::from_slice(e, &[1.0f32, 2.0, 3.0], &[3]).unwrap();
    assert!(matches!(dist::iwae_nll(&one), Err(Error::BadInput { .. })));
}
