//! Forecasting from a static image (Walker et al. 2016) on moving Fashion-MNIST: a conditional
//! VAE over dense trajectories and, in the same run, a deterministic regression; best-of-k
//! endpoint error, sample variance and mode coverage against the known motion modes.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/shared.rs"]
mod shared;

use clap::Parser;
use latent::Result;
use latent::data::motion::{self, CELL, CELLS, FRAMES, SIDE, Scene, TRAJECTORY};
use latent::models::diverse::{best_of_k, coverage, mode_of, sample_variance};
use latent::models::forecast::{Forecast, ForecastConfig, GROUPS, SceneExamples};
use latent::optim::{OptimizerConfig, TrainConfig};

/// Futures sampled per test image.
const SAMPLES: usize = 10;
/// Picture scale: each canvas pixel drawn as SCALE×SCALE.
const SCALE: usize = 3;

/// Train the trajectory CVAE and the regression on moving Fashion-MNIST and write to --out
/// arrows.png (true motion, 5 sampled futures and the regression per row), frames.png (true and
/// sampled future frames), loss_curve.svg/.csv, the checkpoint and metrics.json.
#[derive(Parser, Debug)]
struct Args {
    /// Training epochs over --train-scenes.
    #[arg(long, default_value_t = 10)]
    epochs: u64,
    /// Scenes per training step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Adam learning rate of both networks.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Training scenes, made from the training images.
    #[arg(long, default_value_t = 20_000)]
    train_scenes: usize,
    /// Test scenes, made from the test images.
    #[arg(long, default_value_t = 500)]
    test_scenes: usize,
    /// Latent dimensions of z (4 covered more motion modes than 8 in a shorter run: fewer
    /// regions of N(0, I) that no training code visits).
    #[arg(long, default_value_t = 4)]
    latent: usize,
    /// Decoder standard deviation s (cells of 4 pixels): reconstruction ‖Δ‖²/(2s²).
    #[arg(long, default_value_t = 0.25)]
    noise: f32,
    /// KL weight β.
    #[arg(long, default_value_t = 1.0)]
    beta: f32,
    #[command(flatten)]
    run: shared::RunFlags,
}

impl Args {
    fn validate(&self) -> Result<()> {
        flags::at_least("--epochs", self.epochs as usize, 1)?;
        flags::at_least("--batch", self.batch, 1)?;
        flags::positive("--lr", self.lr)?;
        flags::at_least("--train-scenes", self.train_scenes, self.batch)?;
        flags::at_least("--test-scenes", self.test_scenes, 6)?;
        flags::at_least("--latent", self.latent, 1)?;
        flags::positive("--noise", self.noise as f64)?;
        flags::non_negative("--beta", self.beta as f64)?;
        flags::data_folder(self.run.data.as_deref())
    }
}

/// Mean trajectory `[FRAMES × 2]` (cells) of `traj` over the cells item `item` owns.
fn item_path(traj: &[f32], owners: &[Option<usize>], item: usize) -> Vec<f32> {
    let cells: Vec<usize> = (0..CELLS * CELLS)
        .filter(|&c| owners[c] == Some(item))
        .collect();
    let n = cells.len().max(1) as f32;
    (0..2 * FRAMES)
        .map(|k| {
            cells
                .iter()
                .map(|&c| traj[k * CELLS * CELLS + c])
                .sum::<f32>()
                / n
        })
        .collect()
}

/// Mean endpoint error (pixels) over the owned cells of `pred` against `truth`.
fn endpoint_error(pred: &[f32], truth: &[f32], owners: &[Option<usize>]) -> f64 {
    let last = 2 * (FRAMES - 1) * CELLS * CELLS;
    let cells: Vec<usize> = (0..CELLS * CELLS)
        .filter(|&c| owners[c].is_some())
        .collect();
    let sum: f64 = cells
        .iter()
        .map(|&c| {
            let dx = pred[last + c] - truth[last + c];
            let dy = pred[last + CELLS * CELLS + c] - truth[last + CELLS * CELLS + c];
            ((dx * dx + dy * dy) as f64).sqrt() * CELL as f64
        })
        .sum();
    sum / cells.len().max(1) as f64
}

struct Scores {
    best: [f64; 2],
    variance: f64,
    coverage: f64,
}

fn score(scenes: &[Scene], samples: &[f32]) -> Scores {
    let (mut errors, mut var, mut cov, mut items) = (Vec::new(), 0.0, 0.0, 0usize);
    for (i, s) in scenes.iter().enumerate() {
        let futures = &samples[i * SAMPLES * TRAJECTORY..(i + 1) * SAMPLES * TRAJECTORY];
        let (truth, owners) = (s.trajectory(), s.owners());
        errors.extend(
            futures
                .chunks_exact(TRAJECTORY)
                .map(|f| endpoint_error(f, &truth, &owners)),
        );
        var += sample_variance(futures, TRAJECTORY);
        for (k, item) in s.items.iter().enumerate() {
            if !owners.contains(&Some(k)) {
                continue; // hidden behind the other item
            }
            let modes: Vec<Vec<f32>> = motion::MODES[item.class as usize]
                .iter()
                .map(|m| {
                    let mut motions: Vec<_> = s.items.iter().map(|it| it.motion()).collect();
                    motions[k] = *m;
                    item_path(&s.trajectory_of(&motions), &owners, k)
                })
                .collect();
            let shown: Vec<Option<usize>> = futures
                .chunks_exact(TRAJECTORY)
                .map(|f| mode_of(&item_path(f, &owners, k), &modes))
                .collect();
            cov += coverage(&shown, modes.len());
            items += 1;
        }
    }
    Scores {
        best: [1, 10].map(|k| best_of_k(&errors, SAMPLES, k)),
        variance: var / scenes.len() as f64,
        coverage: cov / items.max(1) as f64,
    }
}

/// An RGB tile `[3, h, w]` of the grey canvas scaled by SCALE.
fn tile(canvas: &[f32]) -> Vec<f32> {
    let w = SIDE * SCALE;
    let mut out = vec![0.0; 3 * w * w];
    for y in 0..w {
        for x in 0..w {
            let v = canvas[(y / SCALE) * SIDE + x / SCALE];
            for c in 0..3 {
                out[c * w * w + y * w + x] = v;
            }
        }
    }
    out
}

/// Draws a line in `colour` onto an RGB tile (square of side `w`), clipped.
fn line(t: &mut [f32], w: usize, from: (f32, f32), to: (f32, f32), colour: [f32; 3]) {
    let steps = ((to.0 - from.0).abs().max((to.1 - from.1).abs()).ceil() as usize).max(1);
    for s in 0..=steps {
        let f = s as f32 / steps as f32;
        let (x, y) = (from.0 + f * (to.0 - from.0), from.1 + f * (to.1 - from.1));
        if x >= 0.0 && y >= 0.0 && (x as usize) < w && (y as usize) < w {
            for c in 0..3 {
                t[c * w * w + y as usize * w + x as usize] = colour[c];
            }
        }
    }
}

/// The scene's image with an arrow per owned cell: from its centre to where `traj` moves it
/// at the last frame (red), the start marked in yellow.
fn arrows(scene: &Scene, traj: &[f32]) -> Vec<f32> {
    let mut t = tile(&scene.image());
    let w = SIDE * SCALE;
    let last = 2 * (FRAMES - 1) * CELLS * CELLS;
    for (c, o) in scene.owners().iter().enumerate() {
        if o.is_none() {
            continue;
        }
        let s = SCALE as f32;
        let from = (
            ((c % CELLS) * CELL + CELL / 2) as f32 * s,
            ((c / CELLS) * CELL + CELL / 2) as f32 * s,
        );
        let d = (
            traj[last + c] * (CELL as f32) * s,
            traj[last + CELLS * CELLS + c] * (CELL as f32) * s,
        );
        line(
            &mut t,
            w,
            from,
            (from.0 + d.0, from.1 + d.1),
            [1.0, 0.1, 0.1],
        );
        line(&mut t, w, from, from, [1.0, 0.9, 0.0]);
    }
    t
}

/// The still image and the future frames that `traj` describes (each item moved by its mean
/// displacement), as RGB tiles.
fn frames(scene: &Scene, traj: &[f32]) -> Vec<f32> {
    let owners = scene.owners();
    let paths: Vec<Vec<f32>> = (0..scene.items.len())
        .map(|k| item_path(traj, &owners, k))
        .collect();
    let mut out = tile(&scene.image());
    for t in 0..FRAMES {
        let shift: Vec<[f32; 2]> = paths
            .iter()
            .map(|p| [p[2 * t] * CELL as f32, p[2 * t + 1] * CELL as f32])
            .collect();
        out.extend(tile(&scene.render(&shift)));
    }
    out
}

fn run(args: &Args) -> Result<()> {
    let (engine, data, out) = args.run.open("forecast")?;
    let train = SceneExamples::new(motion::scenes(
        &data.train,
        args.train_scenes,
        args.run.seed,
    ));
    let test = motion::scenes(&data.test, args.test_scenes, args.run.seed ^ 0x7E57);
    let config = ForecastConfig {
        latent: args.latent,
        noise: args.noise,
        beta: args.beta,
        ..ForecastConfig::default()
    };
    let model = Forecast::new(&engine, config, args.run.seed)?;
    let identity = format!(
        "moving Fashion-MNIST, {} scenes of seed {} from {}",
        args.train_scenes,
        args.run.seed,
        data.identity()
    );
    let tc = TrainConfig {
        optimizers: vec![OptimizerConfig::adam(args.lr); GROUPS.len()],
        checkpoint: Some(out.join("checkpoint.safetensors")),
        name: "forecast".into(),
        ..TrainConfig::adam(args.batch, args.lr, args.run.seed, identity)
    };
    let (trainer, curves, train_seconds) =
        shared::train_epochs(model, tc, &train, args.epochs, args.run.resume, |s| {
            format!(
                "cvae {:.2} (recon {:.2}, KL {:.2})  regression {:.2}  {:5.0} scenes/s",
                s.terms[0].1, s.terms[1].1, s.terms[2].1, s.terms[3].1, s.images_per_second
            )
        })?;
    let images: Vec<f32> = test.iter().flat_map(Scene::image).collect();
    let m = &trainer.model;
    let cvae = m.sample(&images, SAMPLES, false, args.run.seed ^ 0x5A)?;
    let reg = m.sample(&images, SAMPLES, true, 0)?;
    let scores = [
        ("cvae", score(&test, &cvae)),
        ("regression", score(&test, &reg)),
    ];

    let rows = 6;
    let mut grid = Vec::new();
    for (i, s) in test.iter().take(rows).enumerate() {
        grid.extend(arrows(s, &s.trajectory()));
        for j in 0..5 {
            let at = (i * SAMPLES + j) * TRAJECTORY;
            grid.extend(arrows(s, &cvae[at..at + TRAJECTORY]));
        }
        grid.extend(arrows(
            s,
            &reg[i * SAMPLES * TRAJECTORY..i * SAMPLES * TRAJECTORY + TRAJECTORY],
        ));
    }
    let w = SIDE * SCALE;
    latent::io::save_rgb_grid(out.join("arrows.png"), &grid, rows, w, w, 4)?;
    let mut strips = Vec::new();
    for (i, s) in test.iter().take(4).enumerate() {
        strips.extend(frames(s, &s.trajectory()));
        for j in 0..2 {
            let at = (i * SAMPLES + j) * TRAJECTORY;
            strips.extend(frames(s, &cvae[at..at + TRAJECTORY]));
        }
    }
    latent::io::save_rgb_grid(out.join("frames.png"), &strips, 12, w, w, 4)?;
    curves.write(
        &out,
        "loss_curve",
        "forecast: training loss per step (batch means)",
        "loss per scene",
    )?;

    let mut metrics = latent::io::Metrics::new("forecast");
    metrics
        .integer("epochs", trainer.epoch)
        .integer("steps", trainer.step)
        .integer("train_scenes", args.train_scenes as u64)
        .integer("test_scenes", test.len() as u64)
        .number("train_seconds", train_seconds)
        .text(
            "error",
            "endpoint error in pixels, mean over the cells an item covers",
        )
        .text(
            "coverage",
            "share of an item's motion modes shown among 10 samples, averaged over items",
        );
    for (name, s) in &scores {
        metrics
            .number(&format!("{name}.best_of_1"), s.best[0])
            .number(&format!("{name}.best_of_10"), s.best[1])
            .number(&format!("{name}.sample_variance"), s.variance)
            .number(&format!("{name}.mode_coverage"), s.coverage);
    }
    latent::io::write_metrics(out.join("metrics.json"), &metrics)?;
    let (c, r) = (&scores[0].1, &scores[1].1);
    println!(
        "CVAE endpoint error best-of-1 {:.3} px, best-of-10 {:.3} px (ratio {:.2}), coverage {:.1} %; regression {:.3} px, coverage {:.1} %; trained in {train_seconds:.0} s; outputs in {}",
        c.best[0],
        c.best[1],
        c.best[1] / c.best[0],
        100.0 * c.coverage,
        r.best[1],
        100.0 * r.coverage,
        out.display()
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = args.validate().and_then(|_| run(&args)) {
        eprintln!("forecast: {e}");
        std::process::exit(1);
    }
}
