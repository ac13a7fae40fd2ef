//! One test harness for every kernel family: each module holds the CPU twin of its kernel
//! and the randomised GPU-vs-CPU comparisons. Run with `cargo test --release`.

mod adam;
mod batchnorm;
mod binding;
mod categorical;
mod conv2d;
mod conv2d_igemm;
mod conv_transpose2d;
mod elementwise;
mod engine;
mod gated;
mod gather;
mod kl;
mod layout;
mod losses;
mod masked_conv;
mod matmul;
mod matmul_subgroup;
mod matmul_wide;
mod mdn;
mod peak;
mod random;
mod reduce;
mod shaders;
mod softmax;
mod tape;
mod views;
mod vq;

#[path = "../tests/common/mod.rs"]
mod common;
pub use common::engine;

use latent::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

/// An engine on a device opened with no optional features (no subgroups), as a host program
/// might hand over; it runs the portable kernels.
pub fn portable_engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    engine()?;
    ENGINE
        .get_or_init(|| {
            latent::engine::quiet_headless_device_selection();
            let instance =
                wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
            let adapter =
                pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
            let (device, queue) =
                pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                    required_limits: adapter.limits(),
                    ..Default::default()
                }))
                .expect("device");
            Some(Engine::from_device(&adapter, device, queue))
        })
        .as_ref()
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` uniform values in [lo, hi).
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Asserts |gpu − cpu| ≤ atol + rtol·|cpu| everywhere (NaN matches NaN, ±inf must match),
/// printing the first mismatches.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], atol: f32, rtol: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: length");
    let mut bad = Vec::new();
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let ok = if c.is_nan() {
            g.is_nan()
        } else if c.is_infinite() {
            g == c
        } else {
            (g - c).abs() <= atol + rtol * c.abs()
        };
        if !ok {
            bad.push((i, g, c));
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> = bad
            .iter()
            .take(8)
            .map(|(i, g, c)| format!("[{i}] gpu {g} cpu {c}"))
            .collect();
        panic!(
            "{what}: {} of {} elements differ (atol {atol}, rtol {rtol}); first: {}",
            bad.len(),
            gpu.len(),
            first.join(", ")
        );
    }
}

/// The variant name of a result's error (`"Ok"` on success), to assert which typed error came.
pub fn error_kind<T>(r: latent::Result<T>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => format!("{e:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap()
            .into(),
    }
}

/// Random shape sizes that include the awkward ones: 1, primes, powers of two ± 1.
pub fn awkward(rng: &mut StdRng, max: usize) -> usize {
    const PICKS: [usize; 12] = [1, 2, 3, 7, 31, 32, 33, 63, 64, 65, 127, 257];
    if rng.random_bool(0.5) {
        let v = PICKS[rng.random_range(0..PICKS.len())];
        if v <= max {
            return v;
        }
    }
    rng.random_range(1..=max)
}

/// A CPU twin's reference for one output: (value, magnitude), the magnitude being the sum of the
/// absolute values of the parts the value is computed from, which scales f32 rounding error
/// (a result that cancels to near zero is judged by the size of what cancelled).
pub type Spec = (f64, f64);

/// Asserts |gpu − value| ≤ ulps·2^-24·magnitude + 2^-126 everywhere (a NaN value wants NaN),
/// printing the first mismatches. `ulps` counts the roundings and the transcendentals' error in
/// units of 2^-24 relative to the magnitude; 2^-126 admits subnormals flushed to zero.
pub fn assert_within(what: &str, gpu: &[f32], want: &[Spec], ulps: f64) {
    assert_eq!(gpu.len(), want.len(), "{what}: length");
    let u = ulps * f64::from(f32::EPSILON) / 2.0;
    let bad: Vec<String> = gpu
        .iter()
        .zip(want)
        .enumerate()
        .filter(|&(_, (&g, &(v, m)))| {
            let err = (g as f64 - v).abs();
            match v.is_nan() {
                true => !g.is_nan(),
                false => err.is_nan() || err > u * m + f64::from(f32::MIN_POSITIVE),
            }
        })
        .map(|(i, (g, (v, m)))| format!("[{i}] gpu {g} cpu {v} (magnitude {m:.3e})"))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} differ by more than {ulps} ulp of the magnitude; first: {}",
        bad.len(),
        gpu.len(),
        bad.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
    );
}

/// The sum of each row of `d` specs (values and magnitudes add).
pub fn sum_rows(specs: &[Spec], d: usize) -> Vec<Spec> {
    specs
        .chunks(d)
        .map(|row| row.iter().fold((0.0, 0.0), |(v, m), s| (v + s.0, m + s.1)))
        .collect()
}

/// `f` at every element of the `[B, D]` matrices `inputs` (as f64, with the row index): one
/// list of specs per output.
pub fn per_element<const K: usize>(
    inputs: &[&[f32]],
    d: usize,
    f: impl Fn(usize, &[f64]) -> [Spec; K],
) -> [Vec<Spec>; K] {
    let mut out: [Vec<Spec>; K] = std::array::from_fn(|_| Vec::new());
    for i in 0..inputs[0].len() {
        let args: Vec<f64> = inputs.iter().map(|x| x[i] as f64).collect();
        for (o, s) in out.iter_mut().zip(f(i / d, &args)) {
            o.push(s);
        }
    }
    out
}

/// Central differences in f64 of `f` with respect to every element of every input:
/// h = 1e-5·max(1, |x|), so truncation (≈ h²·f'''/6) and cancellation (≈ 1e-16·|f|/h) both
/// stay below 1e-9 for the smooth, moderate-valued functions tested.
pub fn fd_gradients(f: impl Fn(&[Vec<f64>]) -> f64, inputs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut x = inputs.to_vec();
    (0..x.len())
        .map(|k| {
            (0..x[k].len())
                .map(|i| {
                    let v = x[k][i];
                    let h = 1e-5 * v.abs().max(1.0);
                    x[k][i] = v + h;
                    let up = f(&x);
                    x[k][i] = v - h;
                    let down = f(&x);
                    x[k][i] = v;
                    (up - down) / (2.0 * h)
                })
                .collect()
        })
        .collect()
}

/// Asserts |gpu − fd| ≤ 1e-3·(1 + |fd|): the f64 central difference is accurate to ~1e-9 and
/// the f32 gradient to ~1e-6 relative, so only a wrong formula (a lost factor, sign or term
/// is an O(1) relative error) can exceed the bound.
pub fn assert_matches_fd(what: &str, gpu: &[f32], fd: &[f64]) {
    assert_eq!(gpu.len(), fd.len(), "{what}: length");
    for (i, (&g, &f)) in gpu.iter().zip(fd).enumerate() {
        assert!(
            (g as f64 - f).abs() <= 1e-3 * (1.0 + f.abs()),
            "{what}: [{i}] gpu {g} vs finite difference {f}"
        );
    }
}
