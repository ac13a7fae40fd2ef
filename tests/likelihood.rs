//! The likelihood evaluator against a linear-Gaussian model whose log p(x) is known in closed
//! form, the Gaussian log-ratio at extreme log-variances against an f64 twin, the repetition of
//! rows (matrices and feature maps) for importance samples, and dynamic binarisation on the GPU. Run: `cargo test --release --test likelihood`.

mod common;

use latent::data::{self, Batches, Split};
use latent::dist;
use latent::kernels::{kl, random};
use latent::models::likelihood::{
    self, EvalSettings, LayerInfo, Likelihood, Noise, Sampled, Stochastic,
};
use latent::nn::Module;
use latent::optim::Examples;
use latent::{Engine, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f64::consts::PI;

/// z ~ N(0, I₂), x | z ~ N(W z + b, s²·I₃) with orthogonal columns of W, so the exact posterior
/// N(m, S) is diagonal: S = diag(1 / (1 + |w_u|²/s²)), m = S Wᵀ (x − b) / s². The model's q is
/// that posterior with its mean shifted by `shift` and log-variance raised by `widen`.
struct LinearGaussian {
    engine: Engine,
    shift: f64,
    widen: f64,
    rows: usize,
    /// The width the model declares for z (2; another value tests the evaluator's check).
    declared: usize,
}

const W: [[f64; 2]; 3] = [[1.0, 0.5], [2.0, 0.0], [-1.0, 0.5]];
const B: [f64; 3] = [0.3, -0.2, 0.1];
const S2: f64 = 0.25;

impl LinearGaussian {
    fn new(e: &Engine, shift: f64, widen: f64, rows: usize, declared: usize) -> LinearGaussian {
        LinearGaussian {
            engine: e.clone(),
            shift,
            widen,
            rows,
            declared,
        }
    }

    /// The exact posterior (mean, log-variance) of z given x.
    fn posterior(x: &[f64]) -> ([f64; 2], [f64; 2]) {
        let mut m = [0.0; 2];
        let mut lv = [0.0; 2];
        for u in 0..2 {
            let norm: f64 = (0..3).map(|i| W[i][u] * W[i][u]).sum();
            let var = 1.0 / (1.0 + norm / S2);
            m[u] = var * (0..3).map(|i| W[i][u] * (x[i] - B[i])).sum::<f64>() / S2;
            lv[u] = var.ln();
        }
        (m, lv)
    }

    /// log p(x) = log N(x; b, W Wᵀ + s² I), by Gaussian elimination on the 3×3 covariance.
    fn exact_log_px(x: &[f64]) -> f64 {
        let mut c = [[0.0; 4]; 3];
        for i in 0..3 {
            for j in 0..3 {
                c[i][j] = (0..2).map(|u| W[i][u] * W[j][u]).sum::<f64>();
            }
            c[i][i] += S2;
            c[i][3] = x[i] - B[i];
        }
        let mut det = 1.0;
        for p in 0..3 {
            det *= c[p][p];
            let pivot = c[p];
            for row in c.iter_mut().skip(p + 1) {
                let f = row[p] / pivot[p];
                for (v, q) in row.iter_mut().zip(pivot).skip(p) {
                    *v -= f * q;
                }
            }
        }
        // Back substitution: y = C⁻¹ (x − b), then the quadratic form (x − b)ᵀ y.
        let mut y = [0.0; 3];
        for i in (0..3).rev() {
            y[i] = (c[i][3] - (i + 1..3).map(|k| c[i][k] * y[k]).sum::<f64>()) / c[i][i];
        }
        let quad: f64 = (0..3).map(|i| (x[i] - B[i]) * y[i]).sum();
        -0.5 * (3.0 * (2.0 * PI).ln() + det.ln() + quad)
    }
}

impl Module for LinearGaussian {}

impl Likelihood for LinearGaussian {
    fn pixels(&self) -> usize {
        3
    }

    fn stochastic_layers(&self) -> Vec<LayerInfo> {
        vec![LayerInfo {
            name: "z".into(),
            units: self.declared,
        }]
    }

    fn sample_layers(&self, x: &Tensor, _: &[u8], k: usize, noise: &Noise) -> Result<Sampled> {
        let xs: Vec<f64> = x.to_vec::<f32>()?.into_iter().map(f64::from).collect();
        let (mut mu, mut lv) = (Vec::new(), Vec::new());
        for img in xs.chunks(3) {
            let (m, v) = Self::posterior(img);
            for _ in 0..k {
                mu.extend(m.iter().map(|m| (m + self.shift) as f32));
                lv.extend(v.iter().map(|v| (v + self.widen) as f32));
            }
        }
        let n = xs.len() / 3 * k;
        let mu = Tensor::from_slice(&self.engine, &mu, &[n, 2])?;
        let logvar = Tensor::from_slice(&self.engine, &lv, &[n, 2])?;
        let eps = noise.normal(&self.engine, &[n, 2])?;
        let z = kl::reparameterize(&mu, &logvar, &eps)?;
        let zs = z.to_vec::<f32>()?;
        // −log N(x; W z + b, s² I) per row, in f64.
        let nll: Vec<f32> = (0..n)
            .map(|r| {
                let (img, z) = (&xs[r / k * 3..r / k * 3 + 3], &zs[r * 2..r * 2 + 2]);
                (0..3)
                    .map(|i| {
                        let mean = W[i][0] * z[0] as f64 + W[i][1] * z[1] as f64 + B[i];
                        0.5 * ((2.0 * PI * S2).ln() + (img[i] - mean).powi(2) / S2)
                    })
                    .sum::<f64>() as f32
            })
            .collect();
        Ok(Sampled {
            nll_x: Tensor::from_slice(&self.engine, &nll, &[n])?,
            layers: vec![Stochastic {
                z,
                eps,
                mu,
                logvar,
                prior: None,
            }],
        })
    }

    fn rows_per_pass(&self) -> usize {
        self.rows
    }

    fn device(&self) -> Result<Engine> {
        Ok(self.engine.clone())
    }
}

/// `POINTS` draws x = W z + b + s·ν from the model (fixed seed) as a split of 1×3 "images", and
/// their mean −log p(x).
fn points() -> (Split, f64) {
    let mut rng = StdRng::seed_from_u64(12);
    let mut normal = || {
        // Box–Muller from two uniforms in (0, 1].
        let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    };
    let mut xs = Vec::new();
    for _ in 0..POINTS {
        let z = [normal(), normal()];
        for i in 0..3 {
            xs.push((W[i][0] * z[0] + W[i][1] * z[1] + B[i] + S2.sqrt() * normal()) as f32);
        }
    }
    let exact = (xs.chunks(3))
        .map(|x| -LinearGaussian::exact_log_px(&x.iter().map(|&v| v as f64).collect::<Vec<_>>()))
        .sum::<f64>()
        / POINTS as f64;
    (Split::new(xs, vec![0; POINTS], 1, 3).unwrap(), exact)
}

const POINTS: usize = 64;

#[test]
fn the_iwae_bound_of_the_exact_posterior_is_the_exact_log_likelihood() {
    let e = gpu!();
    let (split, exact) = points();
    // With q = p(z|x) every weight is p(x): any k gives log p(x) up to f32 rounding (1e-4 of
    // terms of a few nats).
    let model = LinearGaussian::new(e, 0.0, 0.0, 64, 2);
    for k in [1, 7, 300] {
        let got = likelihood::iwae(&model, &split, 3, k).unwrap();
        assert!(
            (got - exact).abs() < 1e-4,
            "k = {k}: {got} vs exact {exact}"
        );
    }
}

#[test]
fn the_iwae_bound_approaches_the_exact_log_likelihood_from_above_as_k_grows() {
    let e = gpu!();
    let (split, exact) = points();
    // A poor q (mean off by 0.5, 2.5 posterior σ of z₀; variance ×3): k = 1 is the ELBO, a
    // loose bound; 64 rows per
    // pass make k = 2000 take 32 passes per image and k = 8 take 8 images per pass.
    let model = LinearGaussian::new(e, 0.5, 3f64.ln(), 64, 2);
    let gaps: Vec<f64> = [1, 8, 100, 2000]
        .iter()
        .map(|&k| likelihood::iwae(&model, &split, 11, k).unwrap() - exact)
        .collect();
    // Never below the exact value beyond noise (the bound holds in expectation; 0.02 nats is
    // 3 standard errors at k = 8 on 64 points), gaps shrinking up to k = 100 (beyond it they are
    // noise about 0), the last within 0.02 nats.
    assert!(gaps.iter().all(|&g| g > -0.02), "gaps {gaps:?}");
    assert!(gaps[0] > 0.3, "the ELBO of a poor q is loose: {gaps:?}");
    assert!(
        gaps[..3].windows(2).all(|w| w[1] < w[0]),
        "gaps must shrink with k: {gaps:?}"
    );
    assert!(gaps[3] < 0.02, "k = 2000 within 0.02 nats: {gaps:?}");
}

#[test]
fn evaluate_reports_the_analytic_kl_and_units_of_the_layer() {
    let e = gpu!();
    let (split, exact) = points();
    let model = LinearGaussian::new(e, 0.0, 0.0, 5, 2);
    let settings = EvalSettings {
        k: 50,
        iwae_images: 6,
        seed: 1,
    };
    let r = likelihood::evaluate(&model, &split, &settings).unwrap();
    // KL of each unit in f64 from the exact posterior: ½(σ² + μ² − 1 − log σ²).
    let xs = split.images();
    let nf = POINTS as f64;
    let mut unit_kl = [0.0f64; 2];
    let mut means = [Vec::new(), Vec::new()];
    for x in xs.chunks(3) {
        let (m, lv) = LinearGaussian::posterior(&x.iter().map(|&v| v as f64).collect::<Vec<_>>());
        for u in 0..2 {
            unit_kl[u] += 0.5 * (lv[u].exp() + m[u] * m[u] - 1.0 - lv[u]) / nf;
            means[u].push(m[u]);
        }
    }
    let l = &r.layers[0];
    for u in 0..2 {
        assert!(
            (l.unit_kl[u] - unit_kl[u]).abs() < 1e-4,
            "{:?} vs {unit_kl:?}",
            l.unit_kl
        );
        let mean = means[u].iter().sum::<f64>() / nf;
        let var = means[u].iter().map(|m| (m - mean).powi(2)).sum::<f64>() / nf;
        assert!((l.unit_variances[u] - var).abs() < 1e-4);
    }
    assert_eq!((l.active_units, l.kl_units, r.elbo_images), (2, 2, POINTS));
    assert!((r.kl - unit_kl.iter().sum::<f64>()).abs() < 1e-4);
    // The bound on the first 6 points is exact with the exact posterior; bits/dim divides by
    // 3·ln 2.
    let first6 = split.take(6);
    let want = (0..6)
        .map(|i| {
            -LinearGaussian::exact_log_px(
                &first6
                    .image(i)
                    .iter()
                    .map(|&v| v as f64)
                    .collect::<Vec<_>>(),
            )
        })
        .sum::<f64>()
        / 6.0;
    assert!((r.iwae_nll - want).abs() < 1e-4 && r.iwae_images == 6);
    assert!((r.bits_per_dim - want / (3.0 * 2f64.ln())).abs() < 1e-6);
    assert!(r.neg_elbo > r.iwae_nll - 0.05 && (exact - r.iwae_nll).abs() < 5.0);
    let mut m = latent::io::Metrics::new("lg");
    r.add_to(&mut m);
    assert!(m.to_json().unwrap().contains("\"unit_kl_z\""));
}

#[test]
fn a_model_returning_the_wrong_shapes_is_a_typed_error() {
    let e = gpu!();
    let (split, _) = points();
    let model = LinearGaussian::new(e, 0.0, 0.0, 64, 3);
    let err = likelihood::iwae(&model, &split, 0, 4).unwrap_err();
    assert!(matches!(err, latent::Error::ShapeMismatch { .. }), "{err}");
}

#[test]
fn the_log_prior_ratio_matches_an_f64_twin_at_extreme_log_variances() {
    let e = gpu!();
    let (n, d) = (4, 3);
    // Posterior log-variances down to −120 (σ² = 0 in f32) and priors from −20 to +20.
    let lv_q: Vec<f32> = (0..n * d)
        .map(|i| [-120.0, -3.0, 0.5, 8.0][i % 4])
        .collect();
    let lv_p: Vec<f32> = (0..n * d).map(|i| [-20.0, 0.0, 20.0][i % 3]).collect();
    let mu_p: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin()).collect();
    let eps = random::normal(e, &[n, d], 5, 0).unwrap();
    let mu_q: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.11).cos()).collect();
    let t = |v: &[f32]| Tensor::from_slice(e, v, &[n, d]).unwrap();
    let z = kl::reparameterize(&t(&mu_q), &t(&lv_q), &eps).unwrap();
    let got = dist::log_prior_ratio(&z, &eps, &t(&lv_q), Some((&t(&mu_p), &t(&lv_p))))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let (zs, es) = (z.to_vec::<f32>().unwrap(), eps.to_vec::<f32>().unwrap());
    for (r, &got) in got.iter().enumerate() {
        let want: f64 = (r * d..(r + 1) * d)
            .map(|i| {
                let (z, ep) = (zs[i] as f64, es[i] as f64);
                let (vq, vp, mp) = (lv_q[i] as f64, lv_p[i] as f64, mu_p[i] as f64);
                let log_p = -0.5 * ((2.0 * PI).ln() + vp + (z - mp).powi(2) * (-vp).exp());
                let log_q = -0.5 * ((2.0 * PI).ln() + vq + ep * ep);
                log_p - log_q
            })
            .sum();
        // Terms up to ~1e13 at log σp² = −20: f32 keeps about 1e-7 of the largest, 1e-5 is safe.
        assert!(got.is_finite(), "row {r}: {got}");
        assert!(
            (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
            "row {r}: {got} vs {want}"
        );
    }
}

/// 256 copies of one 28×28 image whose pixel j has grey value j/783.
fn ramp() -> Split {
    let img: Vec<f32> = (0..784).map(|j| j as f32 / 783.0).collect();
    Split::new(img.repeat(256), vec![0; 256], 28, 28).unwrap()
}

fn binary_batch(e: &Engine, split: &Split, seed: u64, epoch: u64) -> Vec<f32> {
    let batches = Batches::new(split.len(), 256, seed).unwrap().binarize(true);
    let batch = split.batch(e, &batches.epoch(epoch), 0).unwrap();
    batch.x.to_vec::<f32>().unwrap()
}

#[test]
fn binarisation_is_deterministic_for_a_seed_fresh_each_epoch_and_has_the_pixel_mean() {
    let e = gpu!();
    let split = ramp();
    let a = binary_batch(e, &split, 7, 0);
    assert_eq!(a, binary_batch(e, &split, 7, 0), "same seed and epoch");
    assert_ne!(a, binary_batch(e, &split, 8, 0), "another seed");
    assert!(a.iter().all(|&v| v == 0.0 || v == 1.0));
    // Every image is the same, so the epochs' orders do not matter: differences are fresh draws.
    let epochs: Vec<Vec<f32>> = (0..4).map(|ep| binary_batch(e, &split, 7, ep)).collect();
    for w in epochs.windows(2) {
        let differ = w[0].iter().zip(&w[1]).filter(|(x, y)| x != y).count();
        // Two independent draws differ in Σ 2p(1 − p) ≈ 1/3 of the pixels.
        assert!(
            differ > 50_000,
            "epochs share draws: {differ} of 200,704 differ"
        );
    }
    // Per pixel, 4·256 = 1024 draws: within 5 standard errors (≤ 0.079) of j/783; a pixel
    // of 0 never fires and one of 1 always does.
    for j in 0..784 {
        let p = j as f64 / 783.0;
        let hits: f64 = (epochs.iter())
            .flat_map(|x| x.chunks(784).map(move |img| img[j] as f64))
            .sum();
        let mean = hits / 1024.0;
        let tol = 5.0 * (p * (1.0 - p) / 1024.0).sqrt();
        assert!((mean - p).abs() <= tol, "pixel {j}: mean {mean} vs {p}");
    }
    // Without binarisation the grey values pass through.
    let plain = Batches::new(split.len(), 256, 7).unwrap();
    let x = split
        .batch(e, &plain.epoch(0), 0)
        .unwrap()
        .x
        .to_vec::<f32>();
    assert_eq!(x.unwrap(), split.images());
}

#[test]
fn the_test_set_is_binarised_once_with_the_fixed_seed() {
    let e = gpu!();
    // 1,300 images: two launches, whose draws must not repeat each other.
    let img: Vec<f32> = (0..784).map(|j| j as f32 / 783.0).collect();
    let split = Split::new(
        img.repeat(1300),
        (0..1300).map(|i| (i % 10) as u8).collect(),
        28,
        28,
    )
    .unwrap();
    let a = data::binarized(e, &split, data::TEST_SEED).unwrap();
    let b = data::binarized(e, &split, data::TEST_SEED).unwrap();
    assert_eq!(a.images(), b.images());
    assert_eq!(a.labels(), split.labels());
    assert_ne!(a.image(0), a.image(1000), "the second launch draws afresh");
    assert!(matches!(
        a.upload(e, 1299..1301),
        Err(latent::Error::BadInput { .. })
    ));
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    // 1,019,200 draws of mean 0.5: 5 standard errors are 0.0025.
    assert!(
        (mean(a.images()) - 0.5).abs() < 0.0025,
        "{}",
        mean(a.images())
    );
}

#[test]
fn repeat_rows_repeats_whole_rows_of_matrices_and_feature_maps_in_place() {
    let Some(e) = common::engine() else { return };
    // [B, C, H, W] = [2, 3, 2, 2] and its [2, 12] view: row i·k + j of the result is row i.
    let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
    for shape in [vec![2, 3, 2, 2], vec![2, 12]] {
        let t = Tensor::from_slice(e, &values, &shape).unwrap();
        let y = likelihood::repeat_rows(&t, 3).unwrap();
        let mut want_shape = shape.clone();
        want_shape[0] = 6;
        assert_eq!(y.shape(), want_shape.as_slice());
        let want: Vec<f32> = (0..6)
            .flat_map(|r| values[(r / 3) * 12..(r / 3 + 1) * 12].to_vec())
            .collect();
        assert_eq!(y.to_vec::<f32>().unwrap(), want, "{shape:?}");
    }
}
