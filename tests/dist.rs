//! The IWAE bound against a CPU log-sum-exp in f64, including weights far from 1.
//! `cargo test --release --test dist`.

mod common;

use latent::{Error, Tensor, dist};

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
