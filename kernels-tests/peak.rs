//! CPU twin of `shaders/peak.wgsl`: the FMA recurrence must give the same f32 values, which
//! proves the loop runs the FLOP count `peak::flops` claims.

use crate::{assert_close, gpu};
use latent::kernels::peak;
use latent::{DType, Tensor};

/// out[gid] after `iters` loop iterations (4 FMAs per chain each), summed left to right.
pub fn cpu_peak(gid: u32, iters: u32) -> f32 {
    let s = (gid & 255) as f32 * 0.003_906_25;
    let mut x: Vec<f32> = (0..12).map(|j| s + j as f32 / 16.0).collect();
    for _ in 0..4 * iters {
        for v in &mut x {
            *v = v.mul_add(1.0 - 1.0 / 1024.0, 1.0 / 1024.0);
        }
    }
    x.iter().fold(0.0, |acc, v| acc + v)
}

#[test]
fn fma_peak_matches_its_cpu_recurrence() {
    let e = gpu!();
    for iters in [1u32, 10, 37] {
        let wgs = 5;
        let out = Tensor::uninit(e, &[peak::outputs(wgs)], DType::F32).unwrap();
        peak::fma_peak(&out, wgs, iters).unwrap();
        let got = out.to_vec::<f32>().unwrap();
        let want: Vec<f32> = (0..got.len() as u32).map(|g| cpu_peak(g, iters)).collect();
        // fma is exact-rounded on both sides; the 12-term sum may be reassociated by the
        // shader compiler, so allow a few ULP of the total (≈ 12).
        assert_close(&format!("fma_peak iters {iters}"), &got, &want, 0.0, 4e-6);
    }
    assert_eq!(peak::flops(2, 10), 96.0 * 10.0 * 128.0);
}
