//! Measures of a sampler that gives several outputs for one input, against known true modes:
//! best-of-k error, the variance between samples and mode coverage. Used by the colorization
//! and forecasting examples; tested in `tests/colorize.rs`.

/// Mean over inputs of the smallest error among each input's first `k` samples; `errors` is
/// `[inputs, samples]` row-major with `samples` ≥ `k`.
pub fn best_of_k(errors: &[f64], samples: usize, k: usize) -> f64 {
    let k = k.clamp(1, samples);
    let rows = errors.chunks_exact(samples);
    let n = rows.len().max(1) as f64;
    rows.map(|r| r[..k].iter().cloned().fold(f64::INFINITY, f64::min))
        .sum::<f64>()
        / n
}

/// Root mean squared difference of `a` and `b`.
pub fn rms(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    (s / a.len().max(1) as f64).sqrt()
}

/// The mode a sample shows, or none: its nearest mode m, when the sample is nearer to m than
/// to the modes' mean (the average a regression predicts) or lies within half the distance
/// from m to its nearest other mode (so a mode that is itself the mean, an item that stays
/// between one sliding left and right, can be shown too). The mean of two modes shows neither.
pub fn mode_of(sample: &[f32], modes: &[Vec<f32>]) -> Option<usize> {
    let dist = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let n = modes.len() as f32;
    let mean: Vec<f32> = (0..sample.len())
        .map(|i| modes.iter().map(|m| m[i]).sum::<f32>() / n)
        .collect();
    let (best, d) = modes
        .iter()
        .enumerate()
        .map(|(i, m)| (i, dist(m, sample)))
        .fold((None, f64::INFINITY), |a, (i, d)| {
            if d < a.1 { (Some(i), d) } else { a }
        });
    let best = best?;
    let radius = (modes.iter().enumerate())
        .filter(|&(i, _)| i != best)
        .map(|(_, m)| 0.5 * dist(m, &modes[best]))
        .fold(f64::INFINITY, f64::min);
    (d < dist(sample, &mean) || d < radius).then_some(best)
}

/// The share of `modes` (count) that the samples' modes (from [`mode_of`]) hit.
pub fn coverage(shown: &[Option<usize>], modes: usize) -> f64 {
    let mut hit = vec![false; modes];
    for &m in shown.iter().flatten() {
        if m < modes {
            hit[m] = true;
        }
    }
    hit.iter().filter(|&&h| h).count() as f64 / modes.max(1) as f64
}

/// Mean over elements of the variance across `samples` (each `len` values) of one input.
pub fn sample_variance(samples: &[f32], len: usize) -> f64 {
    let n = (samples.len() / len) as f64;
    let mut total = 0.0;
    for i in 0..len {
        let vals = samples.chunks_exact(len).map(|s| s[i] as f64);
        let mean = vals.clone().sum::<f64>() / n;
        total += vals.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    }
    total / len as f64
}
