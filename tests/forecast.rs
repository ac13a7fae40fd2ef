//! Forecasting: moving Fashion-MNIST is deterministic and its trajectories follow the items'
//! motion modes; a tiny run of the trajectory CVAE and the regression lowers both losses.
//! `cargo test --release --test forecast`.

mod common;

use latent::data::motion::{self, CELL, CELLS, FRAMES, MODES, TRAJECTORY};
use latent::models::forecast::{Forecast, ForecastConfig, GROUPS, PIXELS, SceneExamples};
use latent::optim::{OptimizerConfig, TrainConfig, Trainer};

fn bytes(scenes: &[motion::Scene]) -> Vec<u8> {
    scenes
        .iter()
        .flat_map(|s| {
            let mut v: Vec<f32> = s.image();
            v.extend(s.trajectory());
            v.into_iter().flat_map(|x| x.to_le_bytes())
        })
        .collect()
}

#[test]
fn moving_scenes_are_deterministic_and_follow_their_modes() {
    let split = common::rectangles(300, 8);
    let a = motion::scenes(&split, 200, 4);
    assert_eq!(
        bytes(&a),
        bytes(&motion::scenes(&split, 200, 4)),
        "same seed, same bytes"
    );
    assert_ne!(bytes(&a), bytes(&motion::scenes(&split, 200, 5)));
    assert!(a.iter().any(|s| s.items.len() == 2) && a.iter().any(|s| s.items.len() == 1));
    for s in &a {
        let (traj, owners) = (s.trajectory(), s.owners());
        assert_eq!(traj.len(), TRAJECTORY);
        for (c, o) in owners.iter().enumerate() {
            for t in 0..FRAMES {
                let want = match o {
                    Some(i) => s.items[*i].motion().at(t + 1).map(|v| v / CELL as f32),
                    None => [0.0; 2],
                };
                let got = [
                    traj[2 * t * CELLS * CELLS + c],
                    traj[(2 * t + 1) * CELLS * CELLS + c],
                ];
                assert_eq!(got, want, "cell {c} frame {t}");
            }
        }
        for it in &s.items {
            assert!((it.mode as usize) < MODES[it.class as usize].len());
        }
    }
    // Every mode of a class appears.
    for class in 0..4u8 {
        let used: std::collections::HashSet<u8> = a
            .iter()
            .flat_map(|s| s.items.iter())
            .filter(|i| i.class == class)
            .map(|i| i.mode)
            .collect();
        assert_eq!(used.len(), MODES[class as usize].len(), "class {class}");
    }
}

#[test]
fn a_tiny_forecast_run_lowers_both_losses() {
    let e = gpu!();
    let data = SceneExamples::new(motion::scenes(&common::rectangles(200, 2), 256, 1));
    let config = ForecastConfig {
        hidden: 64,
        latent: 4,
        ..ForecastConfig::default()
    };
    let model = Forecast::new(e, config, 1).unwrap();
    let tc = TrainConfig {
        optimizers: vec![OptimizerConfig::adam(2e-3); GROUPS.len()],
        ..TrainConfig::adam(32, 2e-3, 1, "rectangles")
    };
    let mut t = Trainer::new(model, tc, 256).unwrap();
    let first = t.train_epoch(&data).unwrap();
    let mut last = first.clone();
    for _ in 0..3 {
        last = t.train_epoch(&data).unwrap();
    }
    for (i, (name, v)) in first.terms.iter().enumerate() {
        if *name == "loss" {
            assert!(
                last.terms[i].1 < *v,
                "term {i} ({name}) {v} -> {}",
                last.terms[i].1
            );
        }
    }
    let images: Vec<f32> = data.scenes[..2].iter().flat_map(|s| s.image()).collect();
    assert_eq!(images.len(), 2 * PIXELS);
    let futures = t.model.sample(&images, 3, false, 1).unwrap();
    assert_eq!(futures.len(), 2 * 3 * TRAJECTORY);
    assert!(futures.iter().all(|v| v.is_finite()));
}
