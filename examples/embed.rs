//! A host wgpu program that owns its device and runs latent inside it: it opens the device with
//! the features the fast kernels want, wraps its own buffers, decodes its latent vectors into
//! its own buffer, draws them into its own texture with its own shader and reads that back.
//! `cargo run --release --example embed -- --help`; tested by `cargo test --release --example embed`.

#[path = "common/host.rs"]
mod host;

use clap::Parser;
use host::{HostResult, read_texture};
use latent::kernels::elementwise::{self as ew, Unary};
use latent::models::vae::{Autoencoder, Vae, VaeConfig};
use latent::tape::Tape;
use latent::{DType, Engine, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::path::PathBuf;

/// Side of a Fashion-MNIST image, and its pixels.
const SIDE: u32 = 28;
const PIXELS: usize = (SIDE * SIDE) as usize;
/// Images per row of the host's grid texture.
const GRID_COLUMNS: usize = 8;

#[derive(Parser)]
#[command(
    about = "Embed latent in a host wgpu program: the host owns instance, adapter, device and \
             queue; latent decodes the host's latent vectors (a freshly initialised MLP VAE \
             decoder, W1 shapes) into the host's buffer, and the host draws them into its own \
             texture and checks what it reads back."
)]
struct Cli {
    /// Latent vectors to decode (one 28×28 image each).
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Seed of the decoder's initialisation and of the host's latent vectors.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the host's texture as a PNG here.
    #[arg(long)]
    png: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    match run(cli.count, cli.seed, cli.png.as_deref()) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("embed: {e}");
            std::process::exit(1);
        }
    }
}

/// The whole host program; returns its one-line summary.
fn run(count: usize, seed: u64, png: Option<&std::path::Path>) -> HostResult<String> {
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    // The host's own wgpu objects, with the optional features latent's fast kernels use.
    // On a headless Linux machine, keep Mesa's device-selection layer from asking for a display.
    latent::engine::quiet_headless_device_selection();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let (adapter, device, queue) = host::open_device(&instance, None)?;
    let engine = Engine::from_device(&adapter, device.clone(), queue.clone());
    println!("engine on the host's device: {}", engine.summary());

    // Host buffers: its latent vectors (written by the host) and the images latent writes.
    let latent = VaeConfig::default().latent;
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buffer = |label, floats: usize| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: 4 * floats as u64,
            usage,
            mapped_at_creation: false,
        })
    };
    let latents = buffer("host latents", count * latent);
    let images = buffer("host images", count * PIXELS);
    let z_host = normal(&mut StdRng::seed_from_u64(seed), count * latent);
    queue.write_buffer(&latents, 0, bytemuck::cast_slice(&z_host));

    // latent works in the host's buffers: no copy in, no copy out.
    let z = Tensor::from_buffer(&engine, latents, &[count, latent], DType::F32)?;
    let out = Tensor::from_buffer(&engine, images.clone(), &[count, PIXELS], DType::F32)?;
    let vae = Vae::new(&engine, VaeConfig::default(), seed)?;
    let tape = Tape::no_grad(&engine);
    let logits = vae.decode(&tape.input(&z), None)?;
    ew::unary_into(Unary::Sigmoid, logits.value(), &out)?;
    // Submit latent's recorded work before the host's own submission reads `images`.
    engine.flush()?;

    // The host keeps using its device: its own shader draws the images into its texture.
    let rows = count.div_ceil(GRID_COLUMNS);
    let columns = count.min(GRID_COLUMNS);
    let (width, height) = (SIDE * columns as u32, SIDE * rows as u32);
    let max = device.limits().max_texture_dimension_2d;
    if height > max {
        let most = GRID_COLUMNS as u32 * (max / SIDE);
        return Err(
            format!("--count {count}: the host's texture holds at most {most} images").into(),
        );
    }
    let texture = draw_grid(&device, &queue, &images, width, height);
    let drawn = read_texture(&device, &queue, &texture)?;

    // Check the host's texture against the images read back through the engine.
    let decoded = out.to_vec::<f32>()?;
    let mut wrong = 0;
    for (i, image) in decoded.chunks(PIXELS).enumerate() {
        let (gx, gy) = (
            (i % GRID_COLUMNS) * SIDE as usize,
            (i / GRID_COLUMNS) * SIDE as usize,
        );
        for (p, &v) in image.iter().enumerate() {
            let (x, y) = (gx + p % SIDE as usize, gy + p / SIDE as usize);
            let texel = drawn[4 * (y * width as usize + x)];
            // unorm8 conversion rounds to the nearest of 255 steps; allow one step.
            wrong += usize::from((texel as f32 - v * 255.0).abs() > 1.0);
        }
    }
    if wrong > 0 {
        return Err(format!("{wrong} texels differ from the decoded images").into());
    }
    if let Some(path) = png {
        image::save_buffer(path, &drawn, width, height, image::ExtendedColorType::Rgba8)?;
    }
    let mean = decoded.iter().sum::<f32>() / decoded.len() as f32;
    Ok(format!(
        "decoded {count} images into the host's buffer, drew them into its {width}×{height} \
         texture and read it back: every texel matches (mean intensity {mean:.3})"
    ))
}

/// `n` standard normal draws (Box–Muller), the host's latent vectors.
fn normal(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let (u, v): (f32, f32) = (rng.random_range(f32::EPSILON..1.0), rng.random());
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect()
}

/// The host's own compute pass: grey images from `images` (`[n, 784]` f32) into an RGBA8
/// storage texture, `GRID_COLUMNS` per row.
fn draw_grid(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    images: &wgpu::Buffer,
    width: u32,
    height: u32,
) -> wgpu::Texture {
    const SHADER: &str = r#"
@group(0) @binding(0) var<storage, read> images: array<f32>;
@group(0) @binding(1) var grid: texture_storage_2d<rgba8unorm, write>;

@compute @workgroup_size(8, 8)
fn draw(@builtin(global_invocation_id) id: vec3<u32>) {
    let size = textureDimensions(grid);
    if (id.x >= size.x || id.y >= size.y) { return; }
    let image = (id.y / 28u) * (size.x / 28u) + id.x / 28u;
    var v = 0.0;
    if (image < arrayLength(&images) / 784u) {
        v = images[image * 784u + (id.y % 28u) * 28u + id.x % 28u];
    }
    textureStore(grid, vec2<i32>(id.xy), vec4(v, v, v, 1.0));
}
"#;
    let usage = wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_SRC;
    let texture = host::rgba8_texture(device, "host grid", (width, height), usage);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("host grid"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("host grid"),
        layout: None,
        module: &module,
        entry_point: Some("draw"),
        compilation_options: Default::default(),
        cache: None,
    });
    let view = texture.create_view(&Default::default());
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("host grid"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: images.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::TextureView(&view),
            },
        ],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(width.div_ceil(8), height.div_ceil(8), 1);
    }
    queue.submit([encoder.finish()]);
    texture
}

#[cfg(test)]
mod tests {
    /// The embed path end to end on the default adapter (lavapipe in CI), small: a host device,
    /// wrapped buffers, decoding into the host's buffer and the host's texture checked against it.
    #[test]
    fn a_host_program_decodes_into_its_own_buffer_and_texture() {
        let skip = std::env::var_os("LATENT_SKIP_GPU_TESTS").is_some();
        match super::run(11, 3, None) {
            Ok(line) => assert!(line.contains("every texel matches"), "{line}"),
            Err(e) if skip => eprintln!("SKIPPED on purpose (LATENT_SKIP_GPU_TESTS): {e}"),
            Err(e) => panic!("{e}"),
        }
    }
}
