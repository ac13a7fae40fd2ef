//! One test harness for every kernel family: each module holds the CPU twin of its kernel
//! and the randomised GPU-vs-CPU comparisons. Run with `cargo test --release`.

mod adam;
mod elementwise;
mod engine;
mod layout;
mod matmul;
mod matmul_subgroup;
mod matmul_wide;
mod peak;
mod random;
mod reduce;
mod shaders;
mod softmax;
mod tape;

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
            Some(Engine::from_device(device, queue))
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
