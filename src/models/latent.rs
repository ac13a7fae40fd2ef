//! Latent-space tools (the lecture's "vector arithmetic"): encode a dataset to posterior means,
//! interpolate linearly or spherically, attribute vectors and latent arithmetic. Latents are
//! small host vectors; decoding goes back through the model. Tests: unit tests below, `tests/vae.rs`.

use crate::data::{CLASS_NAMES, Split};
use crate::engine::{Error, Result, Tensor};
use crate::models::vae::Autoencoder;

/// Interpolation path between two latents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Straight line: (1 − t)·a + t·b.
    Linear,
    /// Great circle (slerp, Shoemake 1985): keeps the norm typical of Gaussian latents, so the
    /// midpoints do not shrink toward the low-density origin (White 2016).
    Spherical,
}

/// `steps` ≥ 2 points from `a` to `b` inclusive.
pub fn interpolate(a: &[f32], b: &[f32], steps: usize, path: Path) -> Result<Vec<Vec<f32>>> {
    if a.len() != b.len() || a.is_empty() || steps < 2 {
        return Err(Error::bad(
            "interpolate",
            format!(
                "latents of {} and {} values, {steps} steps",
                a.len(),
                b.len()
            ),
        ));
    }
    let (na, nb) = (norm(a), norm(b));
    let cos = if na > 0.0 && nb > 0.0 {
        (dot(a, b) / (na * nb)).clamp(-1.0, 1.0)
    } else {
        1.0
    };
    let omega = cos.acos();
    Ok((0..steps)
        .map(|i| {
            let t = i as f64 / (steps - 1) as f64;
            // Nearly parallel vectors: slerp's weights become 0/0, and the line is the same path.
            let (wa, wb) = if path == Path::Linear || omega.sin().abs() < 1e-6 {
                (1.0 - t, t)
            } else {
                (
                    ((1.0 - t) * omega).sin() / omega.sin(),
                    (t * omega).sin() / omega.sin(),
                )
            };
            a.iter()
                .zip(b)
                .map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32)
                .collect()
        })
        .collect())
}

/// Mean of the rows `i` of `latents` ([n, d]) with `has(i)` minus the mean of the others: the
/// direction that adds the attribute (the lecture's "smile vector"; here, per class).
pub fn attribute_vector(
    latents: &[f32],
    d: usize,
    has: impl Fn(usize) -> bool,
) -> Result<Vec<f32>> {
    let n = latents.len() / d.max(1);
    let (mut with, mut without) = (vec![0.0f64; d], vec![0.0f64; d]);
    let (mut nw, mut no) = (0usize, 0usize);
    for i in 0..n {
        let (acc, count) = if has(i) {
            (&mut with, &mut nw)
        } else {
            (&mut without, &mut no)
        };
        *count += 1;
        for (s, &v) in acc.iter_mut().zip(&latents[i * d..(i + 1) * d]) {
            *s += v as f64;
        }
    }
    if nw == 0 || no == 0 {
        return Err(Error::bad(
            "attribute_vector",
            format!("{nw} latents have the attribute and {no} lack it; need both"),
        ));
    }
    Ok(with
        .iter()
        .zip(&without)
        .map(|(w, o)| (w / nw as f64 - o / no as f64) as f32)
        .collect())
}

/// z + k·v.
pub fn shift(z: &[f32], v: &[f32], k: f32) -> Vec<f32> {
    z.iter().zip(v).map(|(a, b)| k.mul_add(*b, *a)).collect()
}

/// Posterior means μ(x) of every image of `split` ([n, latent], host), in batches.
pub fn encode_split(vae: &dyn Autoencoder, split: &Split) -> Result<Vec<f32>> {
    vae.set_training(false);
    let engine = vae.engine();
    let pixels = vae.dims().input;
    let mut out = Vec::with_capacity(split.len() * vae.dims().latent);
    for start in (0..split.len()).step_by(1000) {
        let end = (start + 1000).min(split.len());
        let x = Tensor::from_slice(
            engine,
            &split.images()[start * pixels..end * pixels],
            &[end - start, pixels],
        )?;
        let c = vae.condition(&split.labels()[start..end])?;
        out.extend(vae.encode_means(&x, c.as_ref())?.to_vec::<f32>()?);
    }
    Ok(out)
}

/// Decoded mean images of host latents `zs` (each `latent` long), [n·input] on the host.
pub fn decode(vae: &dyn Autoencoder, zs: &[Vec<f32>]) -> Result<Vec<f32>> {
    let flat: Vec<f32> = zs.concat();
    let z = Tensor::from_slice(vae.engine(), &flat, &[zs.len(), vae.dims().latent])?;
    vae.mean_images(&z, None)?.to_vec::<f32>()
}

/// Writes `interpolation.png`: for 4 pairs of test images, a row of the linear path and a row
/// of the spherical one (10 steps each, endpoints are the pair's posterior means).
pub fn interpolation_strips(
    vae: &dyn Autoencoder,
    test: &Split,
    out: &std::path::Path,
) -> Result<()> {
    let d = vae.dims().latent;
    let z = encode_split(vae, &test.take(8))?;
    let mut rows_z = Vec::new();
    for pair in 0..4 {
        let (a, b) = (
            &z[2 * pair * d..(2 * pair + 1) * d],
            &z[(2 * pair + 1) * d..(2 * pair + 2) * d],
        );
        for path in [Path::Linear, Path::Spherical] {
            rows_z.extend(interpolate(a, b, 10, path)?);
        }
    }
    let side = (vae.dims().input as f64).sqrt() as usize;
    let names: Vec<String> = (1..=4)
        .flat_map(|p| [format!("pair {p} linear"), format!("pair {p} slerp")])
        .collect();
    let rows: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::io::save_labelled_grid(
        out.join("interpolation.png"),
        &decode(vae, &rows_z)?,
        8,
        (side, side),
        2,
        crate::io::GridLabels {
            title: Some("from one test image's mean z to another's in 10 steps"),
            rows: &rows,
        },
    )
}

/// Writes `attribute_demo.png`: row r starts from the first test image of class r and adds
/// k·v for k = 0, 0.5, …, 2, where v is the attribute vector of class (r + 1) mod 10 (mean
/// latent of that class minus the mean of the rest) — latent arithmetic moving one garment
/// toward another.
pub fn attribute_demo(vae: &dyn Autoencoder, test: &Split, out: &std::path::Path) -> Result<()> {
    if vae.dims().classes > 0 {
        return Err(Error::bad(
            "attribute_demo",
            "the model is conditional: change its label instead",
        ));
    }
    let d = vae.dims().latent;
    let z = encode_split(vae, test)?;
    let labels = test.labels();
    let side = (vae.dims().input as f64).sqrt() as usize;
    let mut grid = Vec::new();
    for r in 0..10u8 {
        let src = labels
            .iter()
            .position(|&l| l == r)
            .ok_or_else(|| Error::bad("attribute_demo", format!("no test image of class {r}")))?;
        let target = (r + 1) % 10;
        let v = attribute_vector(&z, d, |i| labels[i] == target)?;
        let zs: Vec<Vec<f32>> = [0.0, 0.5, 1.0, 1.5, 2.0]
            .iter()
            .map(|&k| shift(&z[src * d..(src + 1) * d], &v, k))
            .collect();
        grid.extend_from_slice(test.image(src));
        grid.extend(decode(vae, &zs)?);
    }
    let names: Vec<String> = (0..10)
        .map(|r| format!("{} + k*v({})", CLASS_NAMES[r], CLASS_NAMES[(r + 1) % 10]))
        .collect();
    let rows: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::io::save_labelled_grid(
        out.join("attribute_demo.png"),
        &grid,
        10,
        (side, side),
        2,
        crate::io::GridLabels {
            title: Some("test image, then its z + k*v for k = 0, 0.5, 1, 1.5, 2"),
            rows: &rows,
        },
    )
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_runs_from_a_to_b_and_slerp_keeps_the_norm() {
        let (a, b) = ([3.0f32, 0.0], [0.0f32, 3.0]);
        for path in [Path::Linear, Path::Spherical] {
            let p = interpolate(&a, &b, 5, path).unwrap();
            assert_eq!(p.len(), 5);
            assert_eq!(p[0], a);
            assert!((p[4][0] - b[0]).abs() < 1e-6 && (p[4][1] - b[1]).abs() < 1e-6);
        }
        let mid_line = &interpolate(&a, &b, 3, Path::Linear).unwrap()[1];
        let mid_arc = &interpolate(&a, &b, 3, Path::Spherical).unwrap()[1];
        assert!(
            (norm(mid_line) - 1.5 * 2f64.sqrt()).abs() < 1e-5,
            "the line's midpoint is shorter"
        );
        assert!((norm(mid_arc) - 3.0).abs() < 1e-5, "the arc keeps |z| = 3");
        assert!(interpolate(&a, &[1.0], 3, Path::Linear).is_err());
        // Parallel latents fall back to the line instead of dividing by sin 0.
        let p = interpolate(&a, &[6.0, 0.0], 3, Path::Spherical).unwrap();
        assert_eq!(p[1], vec![4.5, 0.0]);
    }

    #[test]
    fn attribute_vector_is_the_difference_of_group_means() {
        // Rows 0 and 2 have the attribute.
        let z = [1.0f32, 0.0, 5.0, 5.0, 3.0, 2.0, 1.0, 1.0];
        let v = attribute_vector(&z, 2, |i| i % 2 == 0).unwrap();
        assert_eq!(v, vec![2.0 - 3.0, 1.0 - 3.0]);
        assert_eq!(shift(&[1.0, 1.0], &v, 2.0), vec![-1.0, -3.0]);
        assert!(attribute_vector(&z, 2, |_| true).is_err());
    }
}
