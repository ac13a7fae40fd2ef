//! CPU twin of the categorical kernels (one-hot maps, an inverse-CDF draw in f64); GPU vs CPU,
//! the draw's frequencies against softmax, and typed errors.

use crate::{error_kind, gpu, rng, uniform};
use latent::kernels::categorical::{one_hot, sample_step};
use latent::kernels::random;
use latent::{DType, Tensor};
use rand::Rng;

// ---- CPU twin -------------------------------------------------------------------------------

/// codes [B, P] -> [B, K, P] with 1.0 at each code (none for a code ≥ K).
pub fn cpu_one_hot(codes: &[u32], b: usize, k: usize) -> Vec<f32> {
    let p = codes.len() / b;
    let mut map = vec![0.0; b * k * p];
    for (m, &c) in codes.iter().enumerate() {
        if (c as usize) < k {
            map[((m / p) * k + c as usize) * p + m % p] = 1.0;
        }
    }
    map
}

/// The first code whose cumulative softmax(row / τ) probability exceeds u, in f64.
pub fn cpu_sample(row: &[f32], u: f32, temperature: f32) -> u32 {
    let v: Vec<f64> = row.iter().map(|&l| l as f64 / temperature as f64).collect();
    let mx = v.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = v.iter().map(|x| (x - mx).exp()).collect();
    let target = u as f64 * e.iter().sum::<f64>();
    let mut acc = 0.0;
    for (k, x) in e.iter().enumerate() {
        acc += x;
        if acc > target {
            return k as u32;
        }
    }
    (e.len() - 1) as u32
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn one_hot_matches_cpu_including_out_of_range_codes() {
    let e = gpu!();
    let mut r = rng(41);
    for (shape, k) in [
        (vec![5], 10),
        (vec![3, 4, 5], 7),
        (vec![2, 7, 7], 512),
        (vec![1, 3], 1),
    ] {
        let n: usize = shape.iter().product();
        // One code in ten is out of range: its column stays zero.
        let codes: Vec<u32> = (0..n)
            .map(|_| r.random_range(0..k as u32 + k as u32 / 9 + 1))
            .collect();
        let t = Tensor::from_slice(e, &codes, &shape).unwrap();
        let map = one_hot(&t, k).unwrap();
        let mut want_shape = shape.clone();
        want_shape.insert(1, k);
        assert_eq!(map.shape(), want_shape);
        assert_eq!(
            map.to_vec::<f32>().unwrap(),
            cpu_one_hot(&codes, shape[0], k),
            "one_hot {shape:?} K={k}"
        );
    }
}

/// Random logits and uniforms: the GPU draws the twin's codes exactly (a flip needs u within
/// f32 rounding, ~1e-7, of a CDF boundary), writes them at `pos` only, and makes that column
/// of the map one-hot whatever it held; with logits for all P positions of each image or for
/// its first R only (a model run on the rows down to `pos`).
#[test]
fn sample_step_draws_the_twins_codes_and_writes_them_in_place() {
    let e = gpu!();
    let mut r = rng(42);
    let cases = [
        (5, (3, 4), 6, 1.0, 12, 11),
        (70, (2, 3), 33, 0.5, 6, 3),
        (1, (1, 1), 2, 2.0, 1, 0),
        (4, (3, 5), 7, 1.0, 10, 7),
    ];
    for (b, (h, w), k, temperature, rows, pos) in cases {
        let p = h * w;
        let logits = uniform(&mut r, b * rows * k, -4.0, 4.0);
        let u = uniform(&mut r, b + 3, 0.0, 1.0);
        let codes0: Vec<u32> = (0..b * p).map(|_| r.random_range(0..k as u32)).collect();
        let map0 = uniform(&mut r, b * k * p, -1.0, 1.0);
        let lt = Tensor::from_slice(e, &logits, &[b * rows, k]).unwrap();
        let ut = Tensor::from_slice(e, &u, &[b + 3]).unwrap();
        let ct = Tensor::from_slice(e, &codes0, &[b, h, w]).unwrap();
        let mt = Tensor::from_slice(e, &map0, &[b, k, h, w]).unwrap();
        sample_step(&lt, &ut, 3, pos, temperature, &ct, &mt).unwrap();
        let (mut codes, mut map) = (codes0.clone(), map0.clone());
        for i in 0..b {
            let row = &logits[(i * rows + pos) * k..][..k];
            let c = cpu_sample(row, u[3 + i], temperature);
            codes[i * p + pos] = c;
            for j in 0..k {
                map[(i * k + j) * p + pos] = if j as u32 == c { 1.0 } else { 0.0 };
            }
        }
        let what = format!("b={b} K={k} τ={temperature} rows {rows} of {p}");
        assert_eq!(ct.to_vec::<u32>().unwrap(), codes, "codes {what}");
        assert_eq!(mt.to_vec::<f32>().unwrap(), map, "map {what}");
    }
}

/// 20,000 draws from one row with Philox uniforms: each code's frequency is within 5σ of its
/// softmax probability (σ = sqrt(p(1 − p)/n)), at temperature 1 and 0.5.
#[test]
fn sample_step_frequencies_follow_the_softmax() {
    let e = gpu!();
    let (n, k) = (20_000, 5);
    let row = [0.3f32, -1.0, 1.2, 0.0, -2.5];
    for temperature in [1.0f32, 0.5] {
        let logits: Vec<f32> = (0..n).flat_map(|_| row).collect();
        let lt = Tensor::from_slice(e, &logits, &[n, k]).unwrap();
        let u = random::uniform(e, &[n], 7, 0).unwrap();
        let codes = Tensor::zeros(e, &[n, 1], DType::U32).unwrap();
        let map = Tensor::zeros(e, &[n, k, 1], DType::F32).unwrap();
        sample_step(&lt, &u, 0, 0, temperature, &codes, &map).unwrap();
        let mut counts = [0usize; 5];
        for c in codes.to_vec::<u32>().unwrap() {
            counts[c as usize] += 1;
        }
        let z: f64 = row
            .iter()
            .map(|&l| (l as f64 / temperature as f64).exp())
            .sum();
        for (j, &l) in row.iter().enumerate() {
            let prob = (l as f64 / temperature as f64).exp() / z;
            let freq = counts[j] as f64 / n as f64;
            let sigma = (prob * (1.0 - prob) / n as f64).sqrt();
            assert!(
                (freq - prob).abs() <= 5.0 * sigma,
                "τ={temperature} code {j}: frequency {freq} vs probability {prob}"
            );
        }
    }
}

#[test]
fn categorical_errors_are_typed() {
    let e = gpu!();
    let f = |s: &[usize]| Tensor::zeros(e, s, DType::F32).unwrap();
    let c = Tensor::zeros(e, &[2, 3, 3], DType::U32).unwrap();
    let (l, u, m) = (f(&[18, 4]), f(&[2]), f(&[2, 4, 3, 3]));
    assert_eq!(error_kind(sample_step(&l, &u, 0, 8, 1.0, &c, &m)), "Ok");
    assert_eq!(
        error_kind(sample_step(&l, &u, 0, 9, 1.0, &c, &m)),
        "BadInput",
        "position"
    );
    assert_eq!(
        error_kind(sample_step(&l, &u, 1, 0, 1.0, &c, &m)),
        "BadInput",
        "uniforms"
    );
    assert_eq!(
        error_kind(sample_step(&l, &u, 0, 0, 0.0, &c, &m)),
        "BadInput",
        "τ = 0"
    );
    assert_eq!(
        error_kind(sample_step(&f(&[18, 5]), &u, 0, 0, 1.0, &c, &m)),
        "ShapeMismatch",
        "map K ≠ logits K"
    );
    assert_eq!(
        error_kind(sample_step(&l, &u, 0, 0, 1.0, &f(&[2, 3, 3]), &m)),
        "DTypeMismatch",
        "f32 codes"
    );
    assert_eq!(error_kind(one_hot(&f(&[3]), 4)), "DTypeMismatch");
    assert_eq!(error_kind(one_hot(&c, 0)), "BadInput");
}
