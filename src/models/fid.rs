//! The Fréchet score of generated images: Gaussians fitted (in f64, on the host) to the
//! penultimate features of `models::feature_net` for generated and real images, and the Fréchet
//! distance between them, the matrix square roots by Jacobi eigendecomposition. This is FID
//! with this project's Fashion-MNIST feature network in place of Inception, so its values are
//! comparable only with each other. Tests: `tests/feature_net.rs` (closed forms).

use super::feature_net::FeatureNet;
use crate::data::Split;
use crate::engine::{Error, Result, Tensor};
use crate::io::Metrics;

/// What the score is, wherever it is printed or stored.
pub const FID_NOTE: &str = "FID computed with this project's Fashion-MNIST feature network \
                            (penultimate layer) instead of Inception";

/// Images on each side of the score: 10,000 generated against the 10,000 test images.
pub const FID_IMAGES: usize = 10_000;

/// Mean and covariance (unbiased, n − 1) of `count` feature vectors of `dim` values.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureStats {
    pub count: usize,
    pub dim: usize,
    pub mean: Vec<f64>,
    /// Row-major `[dim, dim]`.
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// The statistics of `features` `[n, dim]` (n ≥ 2), accumulated in f64.
    pub fn of(features: &[f32], dim: usize) -> Result<FeatureStats> {
        let n = features.len() / dim.max(1);
        if dim == 0 || n < 2 || n * dim != features.len() {
            return Err(Error::bad(
                "FeatureStats::of",
                format!(
                    "needs at least two rows of {dim} features, got {} values",
                    features.len()
                ),
            ));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::bad(
                "FeatureStats::of",
                format!("feature {} of row {} is {}", i % dim, i / dim, features[i]),
            ));
        }
        let mut mean = vec![0.0f64; dim];
        for row in features.chunks(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for row in features.chunks(dim) {
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = v as f64 - m;
            }
            for (i, &ci) in centred.iter().enumerate() {
                // The upper triangle; mirrored below.
                for (j, &cj) in centred.iter().enumerate().skip(i) {
                    cov[i * dim + j] += ci * cj;
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / (n - 1) as f64;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Ok(FeatureStats {
            count: n,
            dim,
            mean,
            cov,
        })
    }

    /// The statistics of `net`'s penultimate features of `images` `[n, pixels]`.
    pub fn of_images(net: &FeatureNet, images: &Tensor) -> Result<FeatureStats> {
        FeatureStats::of(&net.penultimate(images)?, net.config.hidden)
    }

    /// The statistics of the first `n` images of `split` (all of them if it has fewer).
    pub fn of_split(net: &FeatureNet, split: &Split, n: usize) -> Result<FeatureStats> {
        let split = split.take(n.min(split.len()));
        let x = Tensor::from_slice(
            crate::optim::Trainable::engine(net),
            split.images(),
            &[split.len(), split.pixels_per_image()],
        )?;
        FeatureStats::of_images(net, &x)
    }
}

/// Eigenvalues and eigenvectors of the symmetric `a` `[n, n]` (row-major) by cyclic Jacobi
/// rotations (Golub & Van Loan §8.5), in f64: (λ, V) with `a = V·diag(λ)·Vᵀ`, eigenvector j in
/// column j of V. Sweeps until the off-diagonal mass is below 1e-24 of the total.
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if n == 0 || a.len() != n * n {
        return Err(Error::bad(
            "symmetric_eigen",
            format!("needs an n×n matrix, got {} values for n = {n}", a.len()),
        ));
    }
    let mut a = a.to_vec();
    let mut v = vec![0.0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|p| (p + 1..n).map(move |q| (p, q)))
            .map(|(p, q)| 2.0 * a[p * n + q] * a[p * n + q])
            .sum();
        if off <= 1e-24 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[p][q]: t = tan φ, the smaller root (stable).
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Jᵀ A J and V ← V J, J the rotation in the (p, q) plane.
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    Ok(((0..n).map(|i| a[i * n + i]).collect(), v))
}

/// The symmetric square root of the positive semi-definite `a` `[n, n]`: V·diag(√λ)·Vᵀ, with
/// eigenvalues below zero (rounding of a singular covariance) taken as 0.
pub fn sqrt_psd(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let (lambda, v) = symmetric_eigen(a, n)?;
    let root: Vec<f64> = lambda.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let s: f64 = (0..n).map(|k| v[i * n + k] * root[k] * v[j * n + k]).sum();
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
    Ok(out)
}

/// `a·b` of two `[n, n]` matrices.
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// The Fréchet distance between N(μ1, S1) and N(μ2, S2) (Dowson & Landau 1982):
/// ‖μ1 − μ2‖² + tr S1 + tr S2 − 2·tr (S1^½ S2 S1^½)^½, the inner square root's trace as the
/// sum of the square roots of the eigenvalues of the symmetric S1^½ S2 S1^½.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    let n = a.dim;
    if b.dim != n || a.cov.len() != n * n || b.cov.len() != n * n {
        return Err(Error::ShapeMismatch {
            op: "frechet_distance",
            lhs: vec![a.dim, a.cov.len()],
            rhs: vec![b.dim, b.cov.len()],
        });
    }
    let root = sqrt_psd(&a.cov, n)?;
    let mut m = matmul(&matmul(&root, &b.cov, n), &root, n);
    // Symmetrise away the rounding of the products before the symmetric eigensolver.
    for i in 0..n {
        for j in i + 1..n {
            let s = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = s;
            m[j * n + i] = s;
        }
    }
    let (lambda, _) = symmetric_eigen(&m, n)?;
    let cross: f64 = lambda.iter().map(|&l| l.max(0.0).sqrt()).sum();
    let mean: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let trace = |c: &[f64]| (0..n).map(|i| c[i * n + i]).sum::<f64>();
    // Rounding can take a distance of identical sets a hair below 0.
    Ok((mean + trace(&a.cov) + trace(&b.cov) - 2.0 * cross).max(0.0))
}

/// The reference side of the score: the test images' feature statistics and the real-data
/// floor (as many training images as test images, scored against the test set).
pub struct FidReference {
    pub test: FeatureStats,
    /// The score of real training images: what a perfect generator would get.
    pub floor: f64,
}

impl FidReference {
    /// The first `n` test images' statistics and the floor from the first `n` training images.
    pub fn new(net: &FeatureNet, train: &Split, test: &Split, n: usize) -> Result<FidReference> {
        let test = FeatureStats::of_split(net, test, n)?;
        let real = FeatureStats::of_split(net, train, n)?;
        Ok(FidReference {
            floor: frechet_distance(&real, &test)?,
            test,
        })
    }
}

/// A generator's Fréchet score next to the floor.
#[derive(Clone, Debug, PartialEq)]
pub struct Fid {
    pub score: f64,
    pub floor: f64,
    pub samples: usize,
    pub real_images: usize,
}

impl Fid {
    /// `fid`, `fid_real_floor`, `fid_samples`, `fid_real_images` and `fid_note` in `m`.
    pub fn add_to(&self, m: &mut Metrics) {
        m.number("fid", self.score)
            .number("fid_real_floor", self.floor)
            .integer("fid_samples", self.samples as u64)
            .integer("fid_real_images", self.real_images as u64)
            .text("fid_note", FID_NOTE);
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        format!(
            "Fréchet score {:.2} of {} samples against {} test images (real training images: {:.2}); {FID_NOTE}",
            self.score, self.samples, self.real_images, self.floor
        )
    }
}

/// The Fréchet score of generated `samples` `[n, pixels]` (pixel values in [0, 1]) against
/// `reference`, with `net`'s penultimate features.
pub fn fid_of_samples(net: &FeatureNet, samples: &Tensor, reference: &FidReference) -> Result<Fid> {
    let stats = FeatureStats::of_images(net, samples)?;
    Ok(Fid {
        score: frechet_distance(&stats, &reference.test)?,
        floor: reference.floor,
        samples: stats.count,
        real_images: reference.test.count,
    })
}
