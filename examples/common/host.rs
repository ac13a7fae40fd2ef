//! What a host wgpu program that embeds latent does first and last, shared by `embed` and
//! `explorer`: open its own device with the features latent's fast kernels want, make RGBA8
//! textures, and read one back (for a PNG or a check).
// Each example uses some of these.
#![allow(dead_code)]

pub type HostResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The host's adapter, device and queue from `instance` (one that can present to `surface`
/// when given), with the optional features latent's fast kernels use (subgroups, 64-bit
/// integers) where the adapter has them, and the adapter's limits.
pub fn open_device(
    instance: &wgpu::Instance,
    surface: Option<&wgpu::Surface<'_>>,
) -> HostResult<(wgpu::Adapter, wgpu::Device, wgpu::Queue)> {
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        compatible_surface: surface,
        ..Default::default()
    }))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host"),
        required_features: latent::Engine::wanted_features(&adapter),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    Ok((adapter, device, queue))
}

/// A 2-D RGBA8 texture of the host's, `width`×`height`, for `usage`.
pub fn rgba8_texture(
    device: &wgpu::Device,
    label: &str,
    (width, height): (u32, u32),
    usage: wgpu::TextureUsages,
) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage,
        view_formats: &[],
    })
}

/// RGBA8 texels of `texture`, row by row, through the host's own staging buffer.
pub fn read_texture(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    texture: &wgpu::Texture,
) -> HostResult<Vec<u8>> {
    let (row, height) = (4 * texture.width(), texture.height());
    let padded = row.next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host staging"),
        size: (padded * height) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &staging,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(padded),
                rows_per_image: None,
            },
        },
        texture.size(),
    );
    queue.submit([encoder.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv()??;
    let mapped = staging.slice(..).get_mapped_range()?;
    let texels = mapped
        .chunks(padded as usize)
        .flat_map(|r| &r[..row as usize])
        .copied()
        .collect();
    Ok(texels)
}
