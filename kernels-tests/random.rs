//! CPU twin of `shaders/random.wgsl` (Philox-4x32-10, uniform / normal / Bernoulli maps, shifts
//! and flips) checked against Random123's known answers, bit-exact GPU comparisons and
//! statistical tests on 10⁶ draws.

use crate::{assert_close, error_kind, gpu, rng};
use latent::kernels::random::{self, blocks};
use latent::{DType, Tensor};
use rand::Rng;

// ---- CPU twin -------------------------------------------------------------------------------

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// The shader's mulhilo from 16-bit halves, kept as a second oracle of the 64-bit product.
fn mulhilo_halves(a: u32, b: u32) -> (u32, u32) {
    let (al, ah, bl, bh) = (a & 0xffff, a >> 16, b & 0xffff, b >> 16);
    let (ll, lh, hl, hh) = (al * bl, al * bh, ah * bl, ah * bh);
    let mid = (ll >> 16) + (lh & 0xffff) + (hl & 0xffff);
    (
        hh + (lh >> 16) + (hl >> 16) + (mid >> 16),
        a.wrapping_mul(b),
    )
}

/// Philox-4x32-10 (Salmon et al. 2011): ten rounds, the key bumped between rounds.
pub fn philox(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The 4 words of block `b` of the stream (seed, offset): counter = offset + b (64-bit), 0, 0.
pub fn block(seed: u64, offset: u64, b: u64) -> [u32; 4] {
    let ctr = offset.wrapping_add(b);
    philox(
        [ctr as u32, (ctr >> 32) as u32, 0, 0],
        [seed as u32, (seed >> 32) as u32],
    )
}

fn unit(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Element `i` of a draw is word i % 4 of block i / 4.
pub fn cpu_uniform(n: usize, seed: u64, offset: u64) -> Vec<f32> {
    (0..n)
        .map(|i| unit(block(seed, offset, i as u64 / 4)[i % 4]))
        .collect()
}

/// Box–Muller on word pairs (0, 1) and (2, 3): u1 = (k + 1)·2^-24 in (0, 1], θ = π·(k·2^-23 - 1)
/// rounded to f32 as the shader does; log, sqrt, cos, sin in f64, so this is the exact value of
/// the shader's formula.
pub fn cpu_normal(n: usize, seed: u64, offset: u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let w = block(seed, offset, i as u64 / 4);
            let pair = i % 4 / 2 * 2;
            let u1 = ((w[pair] >> 8) + 1) as f64 / 16_777_216.0;
            let t = (w[pair + 1] >> 8) as f32 / 8_388_608.0 - 1.0;
            let theta = (std::f32::consts::PI * t) as f64;
            let r = (-2.0 * u1.ln()).sqrt();
            (if i % 2 == 0 {
                r * theta.cos()
            } else {
                r * theta.sin()
            }) as f32
        })
        .collect()
}

pub fn cpu_bernoulli(probs: &[f32], seed: u64, offset: u64) -> Vec<f32> {
    let u = cpu_uniform(probs.len(), seed, offset);
    u.iter()
        .zip(probs)
        .map(|(&u, &p)| if u < p { 1.0 } else { 0.0 })
        .collect()
}

// ---- helpers --------------------------------------------------------------------------------

fn gpu_uniform(n: usize, seed: u64, offset: u64) -> Vec<f32> {
    let t = random::uniform(gpu_engine(), &[n], seed, offset).unwrap();
    t.to_vec().unwrap()
}

fn gpu_normal(n: usize, seed: u64, offset: u64) -> Vec<f32> {
    let t = random::normal(gpu_engine(), &[n], seed, offset).unwrap();
    t.to_vec().unwrap()
}

fn gpu_engine() -> &'static latent::Engine {
    crate::engine().expect("callers checked gpu!()")
}

/// Lengths that exercise both store paths and the partial last block.
const LENGTHS: [usize; 10] = [1, 2, 3, 4, 5, 7, 8, 33, 784, 4099];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Kolmogorov–Smirnov distance of `samples` from the CDF `cdf`.
fn ks(mut samples: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    samples
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7, far below the KS bound of 1.6e-3).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

fn mean_var(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn philox_twin_matches_random123_known_answers() {
    // Random123 kat_vectors, philox4x32 with 10 rounds.
    let kat = [
        (
            [0u32; 4],
            [0u32; 2],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        ),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (ctr, key, want) in kat {
        assert_eq!(philox(ctr, key), want, "counter {ctr:x?} key {key:x?}");
    }
}

#[test]
fn mulhilo_from_16_bit_halves_is_exact() {
    let mut r = rng(70);
    let edges = [0u32, 1, 0xffff, 0x10000, 0xffff_ffff, M0, M1];
    for &a in &edges {
        for &b in &edges {
            assert_eq!(mulhilo_halves(a, b), mulhilo(a, b), "{a:#x} * {b:#x}");
        }
    }
    for _ in 0..100_000 {
        let (a, b) = (r.random(), r.random());
        assert_eq!(mulhilo_halves(a, b), mulhilo(a, b), "{a:#x} * {b:#x}");
    }
}

#[test]
fn uniform_matches_twin_bit_for_bit() {
    gpu!();
    let mut r = rng(71);
    // Offsets across the 32-bit carry of the counter and the 64-bit wrap, plus random ones.
    let offsets = [0u64, (1 << 32) - 3, u64::MAX - 1, r.random(), r.random()];
    for (k, &n) in LENGTHS.iter().enumerate() {
        let (seed, offset) = (r.random::<u64>(), offsets[k % offsets.len()]);
        let got = gpu_uniform(n, seed, offset);
        let want = cpu_uniform(n, seed, offset);
        assert_eq!(
            bits(&got),
            bits(&want),
            "n {n} seed {seed:#x} offset {offset:#x}"
        );
        assert!(got.iter().all(|&u| (0.0..1.0).contains(&u)));
    }
}

#[test]
fn uniform_covers_more_than_65535_workgroups() {
    gpu!();
    // 256 values per workgroup: 65,536 workgroups and a partial block force a folded 2-D grid
    // and the scalar-store path.
    let n = 65_536 * 256 + 5;
    let got = gpu_uniform(n, 7, 11);
    let want = cpu_uniform(n, 7, 11);
    if let Some(i) = (0..n).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!("element {i}: gpu {} cpu {}", got[i], want[i]);
    }
}

/// Largest |gpu − cpu| / (1 + |cpu|) over the lengths, asserted against the stated bound.
#[test]
fn normal_matches_twin_within_transcendental_error() {
    gpu!();
    let mut r = rng(72);
    for n in LENGTHS.into_iter().chain([200_003]) {
        let (seed, offset) = (r.random::<u64>(), r.random::<u64>());
        let got = gpu_normal(n, seed, offset);
        let want = cpu_normal(n, seed, offset);
        // WGSL's log/cos/sin/sqrt are not correctly rounded; measured worst case on lavapipe
        // (see the launcher) is well inside this.
        assert_close(&format!("normal n {n}"), &got, &want, 5e-7, 5e-7);
    }
}

#[test]
fn bernoulli_matches_twin_decision_exactly() {
    let e = gpu!();
    let mut r = rng(73);
    for n in LENGTHS {
        let (seed, offset) = (r.random::<u64>(), r.random::<u64>());
        let u = cpu_uniform(n, seed, offset);
        // Random probabilities, the edges 0 and 1, and ties with the draw itself (u < u is
        // false, u < next_up(u) is true) so a different comparison would show.
        let probs: Vec<f32> = (0..n)
            .map(|i| match i % 5 {
                0 => u[i],
                1 => f32::from_bits(u[i].to_bits() + 1),
                2 => [0.0, 1.0][i % 2],
                _ => r.random(),
            })
            .collect();
        let p = Tensor::from_slice(e, &probs, &[n]).unwrap();
        let got = random::bernoulli(&p, seed, offset).unwrap().to_vec::<f32>();
        assert_eq!(got.unwrap(), cpu_bernoulli(&probs, seed, offset), "n {n}");
    }
}

#[test]
fn uniform_passes_moment_and_ks_tests_on_a_million_draws() {
    gpu!();
    let n = 1_000_000;
    let u = gpu_uniform(n, 0x5eed, 0);
    let (mean, var) = mean_var(&u);
    // Five standard errors: sd of the mean sqrt(1/12/n), of the variance sqrt((1/80 - 1/144)/n).
    assert!(
        (mean - 0.5).abs() < 5.0 * (1.0 / 12.0 / n as f64).sqrt(),
        "mean {mean}"
    );
    let se_var = ((1.0 / 80.0 - 1.0 / 144.0) / n as f64).sqrt();
    assert!((var - 1.0 / 12.0).abs() < 5.0 * se_var, "variance {var}");
    // KS critical value at α = 0.01: 1.63 / sqrt(n).
    let d = ks(u.iter().map(|&x| x as f64).collect(), |x| x.clamp(0.0, 1.0));
    assert!(d < 1.63 / (n as f64).sqrt(), "KS distance {d}");
}

#[test]
fn normal_passes_moment_and_ks_tests_on_a_million_draws() {
    gpu!();
    let n = 1_000_000;
    let z = gpu_normal(n, 0x5eed, 1 << 40);
    let (mean, var) = mean_var(&z);
    let sn = (n as f64).sqrt();
    // Five standard errors: 1/sqrt(n) for the mean, sqrt(2/n) for the variance.
    assert!(mean.abs() < 5.0 / sn, "mean {mean}");
    assert!((var - 1.0).abs() < 5.0 * 2f64.sqrt() / sn, "variance {var}");
    let phi = |x: f64| 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
    let d = ks(z.iter().map(|&x| x as f64).collect(), phi);
    assert!(d < 1.63 / sn, "KS distance {d}");
}

#[test]
fn streams_are_reproducible_and_offsets_do_not_overlap() {
    gpu!();
    let n = 1001;
    let a = gpu_uniform(n, 42, 0);
    assert_eq!(
        bits(&a),
        bits(&gpu_uniform(n, 42, 0)),
        "same (seed, offset) twice"
    );
    // A draw of n values uses blocks(n) counters: the next draw starts where it ended, so two
    // consecutive draws are the first and second part of one longer draw.
    let b = gpu_uniform(n, 42, blocks(n));
    let long = gpu_uniform(8 * blocks(n) as usize, 42, 0);
    assert_eq!(bits(&a), bits(&long[..n]));
    assert_eq!(bits(&b), bits(&long[4 * blocks(n) as usize..][..n]));
    // Different seeds or offsets: (almost) every value differs.
    for other in [gpu_uniform(n, 43, 0), b, gpu_uniform(n, 42 << 32, 0)] {
        let same = a.iter().zip(&other).filter(|(x, y)| x == y).count();
        assert!(same < 5, "{same} equal values");
    }
}

#[test]
fn random_refuses_wrong_dtypes_and_shapes() {
    let e = gpu!();
    let u = Tensor::zeros(e, &[8], DType::U32).unwrap();
    let f = Tensor::zeros(e, &[8], DType::F32).unwrap();
    let g = Tensor::zeros(e, &[2, 4], DType::F32).unwrap();
    assert_eq!(error_kind(random::uniform_into(&u, 1, 0)), "DTypeMismatch");
    assert_eq!(error_kind(random::normal_into(&u, 1, 0)), "DTypeMismatch");
    assert_eq!(
        error_kind(random::bernoulli_into(&f, &u, 1, 0)),
        "DTypeMismatch"
    );
    assert_eq!(
        error_kind(random::bernoulli_into(&u, &f, 1, 0)),
        "DTypeMismatch"
    );
    assert_eq!(
        error_kind(random::bernoulli_into(&f, &g, 1, 0)),
        "ShapeMismatch"
    );
    assert_eq!(error_kind(random::bernoulli_into(&f, &f, 1, 0)), "Binding");
    assert_eq!(error_kind(random::uniform(e, &[0, 3], 1, 0)), "EmptyTensor");
}

// ---- shift_flip: augmentation of square images -------------------------------------------

/// The shader's augmentation: image `b` draws block `offset + b`; dy from word 0, dx from
/// word 1 (each mod 2·max_shift + 1, minus max_shift), the flip from bit 0 of word 2; then
/// `out[b, y, x] = x[b, y - dy, x0 - dx]`, `x0` mirrored when flipped, zero outside.
pub fn cpu_shift_flip(
    x: &[f32],
    side: usize,
    max_shift: usize,
    flip: bool,
    seed: u64,
    offset: u64,
) -> Vec<f32> {
    let area = side * side;
    let span = 2 * max_shift as u32 + 1;
    let mut out = vec![0.0; x.len()];
    for b in 0..x.len() / area {
        let w = block(seed, offset, b as u64);
        let dy = (w[0] % span) as i64 - max_shift as i64;
        let dx = (w[1] % span) as i64 - max_shift as i64;
        let flipped = flip && w[2] & 1 == 1;
        for y in 0..side as i64 {
            for x0 in 0..side as i64 {
                let xs = if flipped { side as i64 - 1 - x0 } else { x0 };
                let (sy, sx) = (y - dy, xs - dx);
                if (0..side as i64).contains(&sy) && (0..side as i64).contains(&sx) {
                    out[b * area + (y * side as i64 + x0) as usize] =
                        x[b * area + (sy * side as i64 + sx) as usize];
                }
            }
        }
    }
    out
}

#[test]
fn shift_flip_matches_twin_exactly_on_awkward_shapes() {
    let e = gpu!();
    let mut r = rng(41);
    // Odd sides, one image, a shift of side - 1, and an offset whose low word carries.
    let cases = [
        (1, 5, 2, true, 0u64),
        (3, 7, 6, true, u32::MAX as u64 - 1),
        (130, 28, 2, true, 12345),
        (9, 28, 3, false, 0),
        (4, 1, 0, true, 7),
    ];
    for (b, side, shift, flip, offset) in cases {
        let x = crate::uniform(&mut r, b * side * side, 0.0, 1.0);
        let t = Tensor::from_slice(e, &x, &[b, side * side]).unwrap();
        let seed = 0x5EED_0000_0000_0001 ^ b as u64;
        let got: Vec<f32> = random::shift_flip(&t, side, shift, flip, seed, offset)
            .unwrap()
            .to_vec()
            .unwrap();
        let want = cpu_shift_flip(&x, side, shift, flip, seed, offset);
        assert_eq!(
            bits(&got),
            bits(&want),
            "B {b}, side {side}, shift {shift}, flip {flip}"
        );
    }
}

#[test]
fn shift_flip_without_shift_or_flip_is_the_identity() {
    let e = gpu!();
    let x = crate::uniform(&mut rng(42), 3 * 784, 0.0, 1.0);
    let t = Tensor::from_slice(e, &x, &[3, 784]).unwrap();
    let got: Vec<f32> = random::shift_flip(&t, 28, 0, false, 9, 0)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(bits(&got), bits(&x));
}

/// One lit pixel per image shows where each image went: every shift (dy, dx) of [-2, 2]² and
/// both flips must come out near equally often over 4,000 images.
#[test]
fn shift_flip_draws_every_shift_and_flip_evenly() {
    let e = gpu!();
    let (n, side) = (4000, 11);
    // The lit pixel at (5, 2): shifted it lands in columns 0-4, flipped in columns 6-10.
    let mut x = vec![0.0f32; n * side * side];
    for b in 0..n {
        x[b * side * side + 5 * side + 2] = 1.0;
    }
    let t = Tensor::from_slice(e, &x, &[n, side * side]).unwrap();
    let got: Vec<f32> = random::shift_flip(&t, side, 2, true, 77, 0)
        .unwrap()
        .to_vec()
        .unwrap();
    let mut counts = std::collections::HashMap::new();
    for b in 0..n {
        let img = &got[b * side * side..(b + 1) * side * side];
        let lit: Vec<usize> = (0..side * side).filter(|&i| img[i] == 1.0).collect();
        assert_eq!(lit.len(), 1, "image {b} keeps its one pixel: {lit:?}");
        let (y, x) = (lit[0] / side, lit[0] % side);
        let flipped = x >= 6;
        let dx = if flipped { 8 - x as i64 } else { x as i64 - 2 };
        *counts.entry((y as i64 - 5, dx, flipped)).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 50, "5 × 5 shifts × 2 flips: {counts:?}");
    // 80 expected per cell; a 5σ band of a binomial(4000, 1/50).
    for (cell, &c) in &counts {
        assert!((36..=124).contains(&c), "{cell:?}: {c} of 4000");
    }
}

#[test]
fn shift_flip_refuses_bad_shapes_naming_the_op() {
    let e = gpu!();
    let t = Tensor::zeros(e, &[2, 784], DType::F32).unwrap();
    for (side, shift) in [(27, 2), (28, 28)] {
        let err = random::shift_flip(&t, side, shift, true, 1, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shift_flip"), "{err}");
    }
    let u = Tensor::zeros(e, &[2, 784], DType::U32).unwrap();
    assert_eq!(
        error_kind(random::shift_flip(&u, 28, 2, true, 1, 0)),
        "DTypeMismatch"
    );
}
