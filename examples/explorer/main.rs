//! The latent explorer: a window where a trained decoder draws live, on the renderer's own wgpu
//! device. The pointer over the left panel picks a latent point; every frame the engine decodes
//! it into the host's buffer and the render pass reads that buffer directly (no readback).
//! `cargo run --release --example explorer -- --help`; tested by
//! `cargo test --release --example explorer` (headless frames against the batch path, and the
//! window under `xvfb-run`).

#[path = "../common/flags.rs"]
mod flags;
#[path = "../common/host.rs"]
mod host;

mod draw;
mod model;

use clap::Parser;
use draw::{Frame, Layout, Renderer};
use host::HostResult;
use latent::data::FashionMnist;
use latent::{Engine, Error, Result};
use model::{CLASSES, Controls, GRID, Kind, Latents, Model, Plane};
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use winit::application::ApplicationHandler;
use winit::event::{ElementState, KeyEvent, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::{Key, NamedKey};
use winit::window::{Window, WindowId};

/// Explore a trained decoder live: the pointer over the left panel picks the latent point and
/// the right panel shows its decoding, drawn every frame by the engine on the window's own
/// wgpu device. Keys: 0-9 or Left/Right the CVAE's class; Up/Down step along the attribute
/// vector of the chosen class (Tab: next class, Backspace: back to 0); G a grid of
/// neighbouring decodings; Esc or Q quits. The frame time (decode + draw) is shown below and
/// printed on exit.
#[derive(Parser, Debug, Clone)]
struct Cli {
    /// Checkpoint of a `vae`, `cvae`, `conv_vae` or `vqvae` run (the trainer's checkpoint or
    /// the model alone); the model is rebuilt from its metadata.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The panel's plane: two latent axes `I,J` [default: 0,1, the whole space of a 2-D
    /// latent].
    #[arg(long)]
    axes: Option<String>,
    /// Instead, the plane through the origin and the latents of test images `A,B` (0-based):
    /// (1, 0) is image A, (0, 1) image B [default for the VQ-VAE: 0,1].
    #[arg(long, conflicts_with = "axes")]
    images: Option<String>,
    /// Half-width of the panel in plane units [default: 3 along latent axes (prior standard
    /// deviations), 1.5 in the plane of two images].
    #[arg(long)]
    range: Option<f32>,
    /// Test images encoded for the class-coloured dots and the class attribute vectors (the
    /// first N of the 10,000).
    #[arg(long, default_value_t = 1000)]
    test_images: usize,
    /// The CVAE's class at start (0-9).
    #[arg(long, default_value_t = 0)]
    class: usize,
    /// The class whose attribute vector Up/Down step along (0-9).
    #[arg(long, default_value_t = 0)]
    attribute: usize,
    /// Steps along the attribute vector at start (multiples of 0.25 of it; negative moves away).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    attribute_steps: i32,
    /// Start with the grid of neighbouring decodings shown.
    #[arg(long)]
    grid: bool,
    /// Side of each of the two square panels (pixels); the window is 2·side × (side + 24).
    #[arg(long, default_value_t = 512)]
    panel: u32,
    /// Folder with the Fashion-MNIST IDX files [default: $LATENT_DATA, else
    /// /usr/share/datasets/fashion-mnist].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Render N frames into an offscreen texture instead of a window and write the last one
    /// to --png.
    #[arg(long)]
    headless: Option<u64>,
    /// The pointer for --headless (or the window's start), as fractions `X,Y` of the latent
    /// panel: 0,0 top left, 1,1 bottom right.
    #[arg(long, default_value = "0.5,0.5")]
    pointer: String,
    /// Where --headless writes its last frame.
    #[arg(long, default_value = "out/explorer/explorer.png")]
    png: PathBuf,
    /// Close the window by itself after N frames (scripted runs).
    #[arg(long)]
    exit_after_frames: Option<u64>,
}

fn bad(flag: &str, reason: impl Into<String>) -> Error {
    Error::BadFlag {
        flag: flag.into(),
        reason: reason.into(),
    }
}

/// `A,B` as two numbers, or a typed error naming `flag`.
fn pair<T: std::str::FromStr>(flag: &str, s: &str) -> Result<(T, T)> {
    let parsed = s
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    parsed.ok_or_else(|| bad(flag, format!("must be two numbers `A,B`, got `{s}`")))
}

/// `A,B`: two different indices below `n` (`what` names them in the error).
fn two_below(flag: &str, s: &str, n: usize, what: &str) -> Result<(usize, usize)> {
    let (a, b): (usize, usize) = pair(flag, s)?;
    if a == b || a.max(b) >= n {
        return Err(bad(
            flag,
            format!("must be two different {what} below {n}, got {s}"),
        ));
    }
    Ok((a, b))
}

/// The flags checked against each other and against the checkpoint's metadata, before any
/// device is opened.
struct Config {
    cli: Cli,
    checkpoint: latent::io::Checkpoint,
    kind: Kind,
    pointer: (f32, f32),
    /// Latent axes, or test images spanning the plane.
    plane: PlaneChoice,
    range: f32,
}

#[derive(Clone, Copy, Debug)]
enum PlaneChoice {
    Axes(usize, usize),
    Images(usize, usize),
}

impl Config {
    fn new(cli: Cli) -> Result<Config> {
        flags::existing_file("--checkpoint", Some(&cli.checkpoint))?;
        flags::data_folder(cli.data.as_deref())?;
        flags::at_least("--test-images", cli.test_images, 2 * CLASSES)?;
        if cli.test_images > 10_000 {
            return Err(bad("--test-images", "the test set has 10,000 images"));
        }
        for (flag, v) in [("--class", cli.class), ("--attribute", cli.attribute)] {
            if v >= CLASSES {
                return Err(bad(flag, format!("must be a class 0-9, got {v}")));
            }
        }
        // The grid's images at least twice their size; the texture limit every device has.
        let smallest = 2 * (GRID * model::SIDE) as u32;
        if !(smallest..=4096).contains(&cli.panel) {
            let why = format!("must be {smallest} to 4096 pixels, got {}", cli.panel);
            return Err(bad("--panel", why));
        }
        if let Some(r) = cli.range {
            flags::positive("--range", r as f64)?;
        }
        flags::at_least("--headless", cli.headless.unwrap_or(1) as usize, 1)?;
        flags::at_least(
            "--exit-after-frames",
            cli.exit_after_frames.unwrap_or(1) as usize,
            1,
        )?;
        let pointer: (f32, f32) = pair("--pointer", &cli.pointer)?;
        if ![pointer.0, pointer.1]
            .iter()
            .all(|v| (0.0..=1.0).contains(v))
        {
            return Err(bad(
                "--pointer",
                format!("fractions must lie in [0, 1], got {}", cli.pointer),
            ));
        }
        let checkpoint = latent::io::load(&cli.checkpoint)?;
        let kind = Kind::of(&checkpoint)?;
        let plane = match (&cli.axes, &cli.images) {
            (_, Some(s)) => {
                let (a, b) = two_below("--images", s, cli.test_images, "test images")?;
                PlaneChoice::Images(a, b)
            }
            (None, None) if kind.name == "vqvae" => PlaneChoice::Images(0, 1),
            (axes, None) => {
                let axes = axes.as_deref().unwrap_or("0,1");
                let (i, j) = two_below("--axes", axes, kind.latent, "latent axes")?;
                PlaneChoice::Axes(i, j)
            }
        };
        let range = cli.range.unwrap_or(match plane {
            PlaneChoice::Axes(..) => 3.0,
            PlaneChoice::Images(..) => 1.5,
        });
        Ok(Config {
            cli,
            checkpoint,
            kind,
            pointer,
            plane,
            range,
        })
    }

    fn layout(&self) -> Layout {
        Layout {
            panel: self.cli.panel,
        }
    }
}

/// The host's device with latent and the explorer's state on it.
struct Session {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: String,
    latents: Latents,
    renderer: Renderer,
    controls: Controls,
    pointer: (f32, f32),
    class_names: [&'static str; CLASSES],
    /// Decode + draw of every frame.
    times: Vec<Duration>,
}

impl Session {
    /// Loads the model onto the host's device, encodes the test images for the dots and
    /// attribute vectors, and builds the renderer for targets of `format`.
    fn new(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        format: wgpu::TextureFormat,
        config: &Config,
    ) -> HostResult<Session> {
        let engine = Engine::from_device(adapter, device.clone(), queue.clone());
        let data = FashionMnist::load(config.cli.data.as_deref())?;
        let test = data.test.take(config.cli.test_images);
        let (model, kind) = Model::load(&engine, &config.checkpoint)?;
        let images = draw::image_buffer(&device);
        let (choice, range) = (config.plane, config.range);
        let plane = move |z: &[f32]| match choice {
            PlaneChoice::Axes(i, j) => Ok(Plane::axes(kind.latent, (i, j), range)),
            PlaneChoice::Images(a, b) => {
                let row = |k: usize| z[k * kind.latent..(k + 1) * kind.latent].to_vec();
                Plane::through(row(a), row(b), range)
            }
        };
        let latents = Latents::new(model, kind, plane, &test, &images)?;
        let dots: Vec<(f32, f32)> = (latents.test.chunks(kind.latent))
            .map(|z| latents.plane.fraction(latents.plane.coords(z)))
            .collect();
        let names = data.class_names();
        let plane_rgba = draw::plane_image(config.cli.panel, &dots, &latents.labels, names);
        let renderer = Renderer::new(
            &device,
            &queue,
            format,
            config.layout(),
            &images,
            &plane_rgba,
        );
        Ok(Session {
            adapter: engine.summary(),
            device,
            queue,
            latents,
            renderer,
            controls: Controls {
                class: config.cli.class,
                attribute: config.cli.attribute,
                step: 0.25 * config.cli.attribute_steps as f32,
                grid: config.cli.grid,
            },
            pointer: config.pointer,
            class_names: *names,
            times: Vec::new(),
        })
    }

    /// One frame into `target`: the engine decodes the pointer's latents into the host's
    /// buffer (submitted), the render pass draws from that buffer (submitted after it on the
    /// same queue); the time until the device has finished both is the frame time.
    fn frame(&mut self, target: &wgpu::TextureView) -> HostResult<()> {
        let start = Instant::now();
        self.latents.decode(self.pointer, &self.controls)?;
        self.renderer.set_status(&self.queue, &self.status());
        let frame = Frame {
            pointer: self.pointer,
            grid: self.controls.grid,
            box_half: (GRID / 2) as f32 * self.latents.spacing() / (2.0 * self.latents.plane.range),
        };
        let commands = self
            .renderer
            .encode(&self.device, &self.queue, target, &frame);
        self.queue.submit([commands]);
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        self.times.push(start.elapsed());
        Ok(())
    }

    /// The status line: model, class, attribute step, grid, and the mean frame time of the
    /// last 30 frames.
    fn status(&self) -> String {
        let c = &self.controls;
        let mut s = self.latents.kind.name.to_string();
        if self.latents.kind.classes > 0 {
            s += &format!("  class {} {}", c.class, self.class_names[c.class]);
        }
        if c.step != 0.0 {
            s += &format!("  {:+.2} x {}", c.step, self.class_names[c.attribute]);
        }
        if c.grid {
            s += "  grid";
        }
        let last = &self.times[self.times.len().saturating_sub(30)..];
        if !last.is_empty() {
            let ms = last.iter().sum::<Duration>().as_secs_f64() * 1e3 / last.len() as f64;
            s += &format!("  {ms:.2} ms/frame");
        }
        s
    }

    /// The closing note: frames and their decode + draw time.
    fn summary(&self) -> String {
        let mut t: Vec<f64> = self.times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        if t.is_empty() {
            return "no frame drawn".into();
        }
        t.sort_by(f64::total_cmp);
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        format!(
            "{} frames of {}: decode + draw {mean:.2} ms mean, {:.2} ms median, {:.2} ms \
             fastest on {}",
            t.len(),
            self.latents.kind.name,
            t[t.len() / 2],
            t[0],
            self.adapter
        )
    }
}

/// Applies a key to the controls (`conditional`: the model is a CVAE, whose class the digits
/// and Left / Right choose); false when the key does nothing.
fn apply_key(c: &mut Controls, key: &Key, conditional: bool) -> bool {
    match key {
        Key::Character(ch) => match ch.as_str() {
            d if conditional && d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => {
                c.class = (d.as_bytes()[0] - b'0') as usize;
            }
            "g" | "G" => c.grid = !c.grid,
            _ => return false,
        },
        Key::Named(NamedKey::ArrowRight) if conditional => c.class = (c.class + 1) % CLASSES,
        Key::Named(NamedKey::ArrowLeft) if conditional => {
            c.class = (c.class + CLASSES - 1) % CLASSES
        }
        Key::Named(NamedKey::ArrowUp) => c.step += 0.25,
        Key::Named(NamedKey::ArrowDown) => c.step -= 0.25,
        Key::Named(NamedKey::Tab) => c.attribute = (c.attribute + 1) % CLASSES,
        Key::Named(NamedKey::Backspace) => c.step = 0.0,
        _ => return false,
    }
    true
}

/// `--headless N`: N frames into an offscreen texture, the last written to `--png`. Returns
/// the session (for its figures and latents) and the frame's RGBA8 texels.
fn headless(config: &Config) -> HostResult<(Session, Vec<u8>)> {
    latent::engine::quiet_headless_device_selection();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let (adapter, device, queue) = host::open_device(&instance, None)?;
    let target = draw::offscreen(&device, config.layout());
    let mut session = Session::new(&adapter, device, queue, target.format(), config)?;
    let view = target.create_view(&Default::default());
    for _ in 0..config.cli.headless.unwrap_or(1) {
        session.frame(&view)?;
    }
    let rgba = host::read_texture(&session.device, &session.queue, &target)?;
    let png = &config.cli.png;
    if let Some(dir) = png.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            action: "create the PNG's folder",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let (width, height) = config.layout().size();
    image::save_buffer(png, &rgba, width, height, image::ExtendedColorType::Rgba8)?;
    Ok((session, rgba))
}

/// The window: created on the first `resumed`, with the surface, device and session.
struct App {
    config: Config,
    live: Option<Live>,
    error: Option<Box<dyn std::error::Error>>,
    summary: Option<String>,
}

struct Live {
    window: Arc<Window>,
    surface: wgpu::Surface<'static>,
    surface_config: wgpu::SurfaceConfiguration,
    session: Session,
}

impl App {
    fn start(&self, event_loop: &ActiveEventLoop) -> HostResult<Live> {
        let (width, height) = self.config.layout().size();
        let attributes = Window::default_attributes()
            .with_title(format!("latent explorer: {}", self.config.kind.name))
            .with_inner_size(winit::dpi::PhysicalSize::new(width, height))
            .with_resizable(false);
        let window = Arc::new(event_loop.create_window(attributes)?);
        latent::engine::quiet_headless_device_selection();
        let display = event_loop.owned_display_handle();
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_with_display_handle(
            Box::new(display),
        ));
        let surface = instance.create_surface(window.clone())?;
        let (adapter, device, queue) = host::open_device(&instance, Some(&surface))?;
        let caps = surface.get_capabilities(&adapter);
        // A plain (not sRGB) format shows the decoder's values as the PNGs do; the shader
        // converts when only sRGB formats are offered.
        let format = (caps.formats.iter().copied())
            .find(|f| !f.is_srgb())
            .or(caps.formats.first().copied())
            .ok_or("the surface offers no format")?;
        let size = window.inner_size();
        let mut surface_config = surface
            .get_default_config(&adapter, size.width.max(1), size.height.max(1))
            .ok_or("the adapter cannot present to this window")?;
        surface_config.format = format;
        surface_config.present_mode = wgpu::PresentMode::AutoVsync;
        surface.configure(&device, &surface_config);
        let session = Session::new(&adapter, device, queue, format, &self.config)?;
        Ok(Live {
            window,
            surface,
            surface_config,
            session,
        })
    }

    fn redraw(&mut self, event_loop: &ActiveEventLoop) -> HostResult<()> {
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        let texture = match live.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(t)
            | wgpu::CurrentSurfaceTexture::Suboptimal(t) => t,
            wgpu::CurrentSurfaceTexture::Outdated => {
                live.surface
                    .configure(&live.session.device, &live.surface_config);
                return Ok(());
            }
            wgpu::CurrentSurfaceTexture::Timeout | wgpu::CurrentSurfaceTexture::Occluded => {
                return Ok(());
            }
            other => return Err(format!("the surface gave no texture: {other:?}").into()),
        };
        let view = texture.texture.create_view(&Default::default());
        live.session.frame(&view)?;
        live.window.pre_present_notify();
        live.session.queue.present(texture);
        let frames = live.session.times.len() as u64;
        if self
            .config
            .cli
            .exit_after_frames
            .is_some_and(|n| frames >= n)
        {
            event_loop.exit();
        }
        Ok(())
    }

    fn fail(&mut self, event_loop: &ActiveEventLoop, e: Box<dyn std::error::Error>) {
        self.error.get_or_insert(e);
        event_loop.exit();
    }
}

impl ApplicationHandler for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.live.is_some() {
            return;
        }
        match self.start(event_loop) {
            Ok(live) => {
                live.window.request_redraw();
                self.live = Some(live);
            }
            Err(e) => self.fail(event_loop, e),
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::CursorMoved { position, .. } => {
                let panel = self.config.cli.panel as f64;
                let (x, y) = (position.x / panel, position.y / panel);
                if (0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y) {
                    live.session.pointer = (x as f32, y as f32);
                }
            }
            WindowEvent::KeyboardInput {
                event:
                    KeyEvent {
                        logical_key,
                        state: ElementState::Pressed,
                        ..
                    },
                ..
            } => match logical_key {
                Key::Named(NamedKey::Escape) => event_loop.exit(),
                Key::Character(ref c) if c.as_str() == "q" => event_loop.exit(),
                key => {
                    let conditional = live.session.latents.kind.classes > 0;
                    apply_key(&mut live.session.controls, &key, conditional);
                }
            },
            WindowEvent::Resized(size) => {
                live.surface_config.width = size.width.max(1);
                live.surface_config.height = size.height.max(1);
                live.surface
                    .configure(&live.session.device, &live.surface_config);
            }
            WindowEvent::RedrawRequested => {
                if let Err(e) = self.redraw(event_loop) {
                    self.fail(event_loop, e);
                }
            }
            _ => {}
        }
    }

    fn about_to_wait(&mut self, _: &ActiveEventLoop) {
        // Draw continuously: every frame decodes afresh (that is what the frame time measures).
        if let Some(live) = &self.live {
            live.window.request_redraw();
        }
    }

    fn exiting(&mut self, _: &ActiveEventLoop) {
        if let Some(live) = self.live.take() {
            self.summary = Some(live.session.summary());
        }
    }
}

/// The windowed mode: runs until the window closes; returns the closing note.
fn windowed(config: Config, any_thread: bool) -> HostResult<String> {
    let mut builder = EventLoop::builder();
    if any_thread {
        // Tests run on a harness thread; X11 itself does not mind.
        use winit::platform::x11::EventLoopBuilderExtX11;
        builder.with_any_thread(true);
    }
    let event_loop = builder.build()?;
    event_loop.set_control_flow(ControlFlow::Poll);
    let mut app = App {
        config,
        live: None,
        error: None,
        summary: None,
    };
    event_loop.run_app(&mut app)?;
    if let Some(e) = app.error {
        return Err(e);
    }
    app.summary
        .ok_or_else(|| "the window closed before it was drawn".into())
}

fn run(cli: Cli) -> HostResult<String> {
    let config = Config::new(cli)?;
    if config.cli.headless.is_some() {
        let (session, _) = headless(&config)?;
        return Ok(format!(
            "{}; wrote {}",
            session.summary(),
            config.cli.png.display()
        ));
    }
    windowed(config, false)
}

fn main() {
    match run(Cli::parse()) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("explorer: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
#[path = "../../tests/common/mod.rs"]
mod common;
#[cfg(test)]
mod tests;
