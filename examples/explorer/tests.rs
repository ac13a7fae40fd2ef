//! The explorer end to end on the default adapter (lavapipe in CI), in seconds: headless frames
//! of every model kind agree with the batch path (`mean_images`, `decode_continuous`) and follow
//! the pointer; the window starts, draws and closes under `xvfb-run`.

use super::*;
use crate::common::TempDir;
use latent::io::{self, Meta};
use latent::models::conv_vae::ConvVae;
use latent::models::vae::{self, Autoencoder, Objective, TrainSettings, Vae, VaeConfig};
use latent::models::vqvae::{VqTraining, VqVae, VqVaeConfig};
use latent::nn::Module;
use latent::optim::Trainer;

/// The test images the explorer encodes (dots, attribute vectors): enough for every class.
const TEST_IMAGES: &str = "100";

fn cli(checkpoint: &Path, png: &Path, extra: &[&str]) -> Cli {
    let args = [
        "explorer",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
        "--test-images",
        TEST_IMAGES,
    ];
    // The smallest panel, unless the test sets one.
    let panel = match extra.contains(&"--panel") {
        true => &[][..],
        false => &["--panel", "280"][..],
    };
    Cli::parse_from(args.iter().chain(panel).chain(extra))
}

/// A model saved alone with its architecture metadata, as the explorer loads it.
fn save(path: &Path, module: &dyn Module, describe: Vec<(String, String)>) {
    let meta: Meta = describe.into_iter().collect();
    io::save_module(path, module, &meta).unwrap();
}

/// A 2-D latent MLP VAE as initialised (seed 1), saved alone.
fn seeded_vae(engine: &Engine, path: &Path) {
    let config = VaeConfig {
        latent: 2,
        ..VaeConfig::default()
    };
    let vae = Vae::new(engine, config, 1).unwrap();
    save(path, &vae, vae.describe());
}

/// A 2-D latent MLP VAE trained for 40 steps on 640 training images (a few seconds): enough
/// for its decodings to change visibly across the plane.
fn trained_vae(engine: &Engine, path: &Path) {
    let data = FashionMnist::load(None).unwrap();
    let train = data.train.take(640);
    let settings = TrainSettings {
        batch: 64,
        lr: 3e-3,
        beta: 1.0,
        warmup: 0,
        seed: 5,
        objective: Objective::Elbo,
        binarize: false,
    };
    let config = VaeConfig {
        latent: 2,
        ..VaeConfig::default()
    };
    let model = Box::new(Vae::new(engine, config, 5).unwrap());
    let mut t = vae::trainer(model, &settings, settings.config("640 images", None), 640).unwrap();
    while t.epoch < 4 {
        t.train_epoch(&train).unwrap();
    }
    t.save(path).unwrap();
}

/// The decoded images of a headless frame as the PNG on disk holds them: grey values in
/// [0, 1] sampled at each enlarged pixel's centre, image by image.
fn images_in_png(png: &Path, panel: usize, grid: usize) -> Vec<f32> {
    let png = image::open(png).unwrap().to_rgba8();
    let scale = panel / (28 * grid);
    let offset = (panel - grid * 28 * scale) / 2;
    let mut out = Vec::new();
    for k in 0..grid * grid {
        let (cx, cy) = (k % grid, k / grid);
        for p in 0..784 {
            let x = panel + offset + (cx * 28 + p % 28) * scale + scale / 2;
            let y = offset + (cy * 28 + p / 28) * scale + scale / 2;
            out.push(png.get_pixel(x as u32, y as u32)[0] as f32 / 255.0);
        }
    }
    out
}

/// Runs the headless mode and checks its PNG against the batch path on `engine`; returns the
/// decoded images as drawn.
fn frame_matches_batch_path(engine: &Engine, cli: Cli) -> Vec<f32> {
    let config = Config::new(cli).unwrap();
    let (session, _) = headless(&config).unwrap();
    let c = session.controls;
    let zs = session.latents.latents(session.pointer, &c);
    let grid = if c.grid { GRID } else { 1 };
    let drawn = images_in_png(&config.cli.png, config.cli.panel as usize, grid);
    let (model, kind) = Model::load(engine, &config.checkpoint).unwrap();
    let z = latent::Tensor::from_slice(engine, &zs.concat(), &[zs.len(), kind.latent]).unwrap();
    let batch = batch_images(&model, &z, c.class as u8);
    assert_eq!(drawn.len(), batch.len());
    // The same kernels on the same kind of device; the PNG rounds to 255 steps: one step.
    let worst = (drawn.iter().zip(&batch))
        .map(|(d, b)| (d - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1.0 / 255.0 + 1e-6,
        "{}: live and batch differ by {worst}",
        kind.name
    );
    drawn
}

/// The batch path, read back: the pixel means `[n·784]` of `z` `[n, latent]` under `class`
/// (`mean_images` of a VAE, `decode_continuous` of the VQ-VAE).
fn batch_images(model: &Model, z: &latent::Tensor, class: u8) -> Vec<f32> {
    let n = z.shape()[0];
    match model {
        Model::Vae(m) => {
            let c = m.condition(&vec![class; n]).unwrap();
            m.mean_images(z, c.as_ref()).unwrap().to_vec().unwrap()
        }
        Model::Vq(m) => {
            let (h, w) = m.config.latent_size();
            let z = z.reshape(&[n, m.config.vq.dim, h, w]).unwrap();
            m.decode_continuous(&z).unwrap().to_vec().unwrap()
        }
    }
}

fn spread(v: &[f32]) -> f32 {
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
}

fn mean_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

fn engine_or_skip() -> Option<&'static Engine> {
    crate::common::engine()
}

/// The live path and the batch path agree, and the picture follows the pointer and the keys'
/// state (grid, attribute steps), on a trained 2-D VAE.
#[test]
fn headless_frames_of_a_trained_vae_match_the_batch_path_and_follow_the_pointer() {
    let Some(engine) = engine_or_skip() else {
        return;
    };
    let dir = TempDir::new("explorer-vae");
    let ckpt = dir.path("vae.safetensors");
    trained_vae(engine, &ckpt);
    let frame = |name: &str, extra: &[&str]| {
        let png = dir.path(name);
        frame_matches_batch_path(engine, cli(&ckpt, &png, extra))
    };
    let a = frame("a.png", &["--headless", "3", "--pointer", "0.3,0.7"]);
    let b = frame("b.png", &["--headless", "1", "--pointer", "0.8,0.2"]);
    assert!(
        spread(&a) > 0.1 && spread(&b) > 0.1,
        "a blank image: {} {}",
        spread(&a),
        spread(&b)
    );
    let moved = mean_difference(&a, &b);
    assert!(
        moved > 0.02,
        "two pointer positions drew nearly the same image ({moved})"
    );
    let shifted = frame(
        "c.png",
        &[
            "--headless",
            "1",
            "--pointer",
            "0.3,0.7",
            "--attribute",
            "1",
            "--attribute-steps",
            "4",
        ],
    );
    assert!(
        mean_difference(&a, &shifted) > 0.02,
        "the attribute step changed nothing"
    );
    let grid = frame(
        "grid.png",
        &["--headless", "1", "--pointer", "0.5,0.5", "--grid"],
    );
    let first = &grid[..784];
    let last = &grid[24 * 784..];
    assert!(
        mean_difference(first, last) > 0.02,
        "the grid's corners are the same image"
    );
    // The dots: the latent panel holds pixels of class colours.
    let png = image::open(dir.path("a.png")).unwrap().to_rgba8();
    let coloured = (png.enumerate_pixels())
        .filter(|(x, y, p)| {
            *x < 280 && *y < 280 && latent::io::PALETTE.iter().any(|c| c[..] == p.0[..3])
        })
        .count();
    assert!(
        coloured >= 9 * 20,
        "only {coloured} dot pixels in the latent panel"
    );
}

/// Every model kind loads from its checkpoint and draws what its batch path decodes: a CVAE
/// (whose class changes the image), the convolutional VAE in the plane of two test images,
/// and the VQ-VAE through its continuous latents (seeded, or trained for one step: loading and
/// drawing are under test, not the models).
#[test]
fn every_model_kind_draws_what_its_batch_path_decodes() {
    let Some(engine) = engine_or_skip() else {
        return;
    };
    let dir = TempDir::new("explorer-kinds");
    let cvae = Vae::new(
        engine,
        VaeConfig {
            latent: 4,
            classes: 10,
            ..VaeConfig::default()
        },
        2,
    )
    .unwrap();
    save(&dir.path("cvae.safetensors"), &cvae, cvae.describe());
    // The convolutional VAE and the VQ-VAE as their trainers save them after one step:
    // optimizer state, running statistics, EMA and counters beside the model.
    let train = FashionMnist::load(None).unwrap().train.take(16);
    let conv = Box::new(ConvVae::new(engine, 8, 3).unwrap());
    let settings = TrainSettings {
        batch: 16,
        lr: 1e-3,
        beta: 1.0,
        warmup: 0,
        seed: 3,
        objective: Objective::Elbo,
        binarize: false,
    };
    let mut t = vae::trainer(conv, &settings, settings.config("16", None), 16).unwrap();
    t.train_epoch(&train).unwrap();
    t.save(&dir.path("conv.safetensors")).unwrap();
    let vq = VqVae::new(engine, VqVaeConfig::default(), 4).unwrap();
    let config = VqTraining::<VqVae>::config(16, 1e-3, 4, "16");
    let mut t = Trainer::new(VqTraining::new(vq, &train), config, 16).unwrap();
    t.train_epoch(&train).unwrap();
    t.save(&dir.path("vq.safetensors")).unwrap();

    let ck = dir.path("cvae.safetensors");
    let [class2, class7] = ["2", "7"].map(|class| {
        let png = dir.path(&format!("class{class}.png"));
        let extra = ["--headless", "1", "--class", class, "--axes", "1,3"];
        frame_matches_batch_path(engine, cli(&ck, &png, &extra))
    });
    assert!(
        mean_difference(&class2, &class7) > 1e-3,
        "the class changed nothing"
    );
    let conv = dir.path("conv.safetensors");
    frame_matches_batch_path(
        engine,
        cli(
            &conv,
            &dir.path("conv.png"),
            &["--headless", "1", "--images", "3,5", "--pointer", "0.7,0.4"],
        ),
    );
    let vq = dir.path("vq.safetensors");
    frame_matches_batch_path(
        engine,
        cli(&vq, &dir.path("vq.png"), &["--headless", "1", "--grid"]),
    );
}

/// Bad flags are typed errors naming the flag, before any device is opened.
#[test]
fn bad_flags_are_refused_before_the_device_opens() {
    let dir = TempDir::new("explorer-flags");
    let ckpt = dir.path("vae.safetensors");
    let Some(engine) = engine_or_skip() else {
        return;
    };
    seeded_vae(engine, &ckpt);
    let png = dir.path("x.png");
    for (extra, flag) in [
        (&["--pointer", "1.5,0.2"][..], "--pointer"),
        (&["--pointer", "0.5"][..], "--pointer"),
        (&["--axes", "0,2"][..], "--axes"),
        (&["--images", "4,4"][..], "--images"),
        (&["--class", "10"][..], "--class"),
        (&["--panel", "100"][..], "--panel"),
        (&["--headless", "0"][..], "--headless"),
    ] {
        match Config::new(cli(&ckpt, &png, extra)) {
            Err(Error::BadFlag { flag: f, .. }) => assert_eq!(f, flag, "{extra:?}"),
            Err(e) => panic!("{extra:?}: {e}"),
            Ok(_) => panic!("{extra:?} was accepted"),
        }
    }
    let missing = dir.path("none.safetensors");
    assert!(matches!(
        Config::new(cli(&missing, &png, &[])),
        Err(Error::BadFlag { .. })
    ));
    // A checkpoint of a model the explorer does not show is refused, naming the model.
    let other = dir.path("other.safetensors");
    let vae = Vae::new(engine, VaeConfig::default(), 1).unwrap();
    save(&other, &vae, vec![("model".into(), "pixelcnn".into())]);
    match Config::new(cli(&other, &png, &[])) {
        Err(Error::BadFlag { flag, reason }) => {
            assert_eq!(flag, "--checkpoint");
            assert!(reason.contains("`pixelcnn`"), "{reason}");
        }
        other => panic!("a pixelcnn checkpoint: {:?}", other.err()),
    }
}

/// The keys change what the next frame decodes: class (a CVAE only), attribute steps and
/// class, grid.
#[test]
fn keys_change_the_controls() {
    let start = Controls {
        class: 9,
        attribute: 9,
        step: 0.0,
        grid: false,
    };
    let press = |keys: &[Key], conditional: bool| {
        let mut c = start;
        let handled = keys.iter().all(|k| apply_key(&mut c, k, conditional));
        (c, handled)
    };
    let ch = |s: &str| Key::Character(s.into());
    let named = Key::Named;
    let (c, handled) = press(&[ch("3"), named(NamedKey::ArrowRight)], true);
    assert!(handled && c.class == 4, "{c:?}");
    assert_eq!(
        press(&[named(NamedKey::ArrowRight)], true).0.class,
        0,
        "wraps"
    );
    assert!(!press(&[ch("3")], false).1, "no class without a condition");
    let (c, _) = press(
        &[
            named(NamedKey::ArrowUp),
            named(NamedKey::ArrowUp),
            named(NamedKey::ArrowDown),
        ],
        false,
    );
    assert_eq!(c.step, 0.25);
    let (c, _) = press(
        &[
            named(NamedKey::ArrowUp),
            named(NamedKey::Backspace),
            named(NamedKey::Tab),
        ],
        false,
    );
    assert_eq!((c.step, c.attribute), (0.0, 0));
    assert!(press(&[ch("g")], false).0.grid);
    assert!(!press(&[ch("x")], false).1);
}

/// The environment variable that hands the windowed test its checkpoint.
const WINDOW_CHECKPOINT: &str = "LATENT_EXPLORER_TEST_CHECKPOINT";
/// Frames the windowed test draws before it closes itself.
const WINDOW_FRAMES: &str = "20";

/// The window under a virtual X server: this test runs [`window_on_the_current_display`] in a
/// child process under `xvfb-run`, which must start, draw its frames and exit cleanly with the
/// closing note. Without `xvfb-run` it fails (install the Debian package `xvfb`).
#[test]
fn the_window_starts_draws_and_closes_under_xvfb() {
    let found = std::process::Command::new("xvfb-run")
        .arg("--help")
        .output();
    assert!(
        found.is_ok(),
        "xvfb-run is missing: the windowed test needs a virtual X server (Debian package xvfb; \
         `.ci/run` installs it)"
    );
    let Some(engine) = engine_or_skip() else {
        return;
    };
    let dir = TempDir::new("explorer-window");
    let ckpt = dir.path("vae.safetensors");
    seeded_vae(engine, &ckpt);
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x800x24"])
        .arg(exe)
        .args([
            "tests::window_on_the_current_display",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(WINDOW_CHECKPOINT, &ckpt)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the windowed run failed:\n{text}");
    let note = format!("{WINDOW_FRAMES} frames of vae: decode + draw");
    assert!(text.contains(&note), "no closing note `{note}`:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the windowed run did not run:\n{text}"
    );
    println!(
        "{}",
        text.lines().find(|l| l.contains(&note)).unwrap_or_default()
    );
}

/// The windowed mode on `$DISPLAY`, closing itself after a few frames; run by
/// [`the_window_starts_draws_and_closes_under_xvfb`] under `xvfb-run`, not on its own.
#[test]
#[ignore = "needs an X display: run by the_window_starts_draws_and_closes_under_xvfb"]
fn window_on_the_current_display() {
    let ckpt = std::env::var_os(WINDOW_CHECKPOINT).expect("the checkpoint to show");
    let png = std::env::temp_dir().join("unused.png");
    let extra = ["--exit-after-frames", WINDOW_FRAMES, "--pointer", "0.3,0.6"];
    let config = Config::new(cli(Path::new(&ckpt), &png, &extra)).unwrap();
    let note = windowed(config, true).unwrap();
    println!("{note}");
}
