//! The explorer's renderer on the host's device: one render pass (`draw.wgsl`) reads the
//! decoder's output buffer directly, next to a pre-drawn panel of class-coloured dots and a
//! status line in the built-in 5×7 font. Tested with the example.

use crate::model::{GRID, PIXELS, SIDE};
use bytemuck::{Pod, Zeroable};

/// Height of the status line under the panels (pixels); its text is drawn at scale 2.
pub const BAR: u32 = 24;
const TEXT_SCALE: usize = 2;
const BACKGROUND: [u8; 4] = [24, 24, 28, 255];

/// The target's layout: two square panels side by side over a status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub panel: u32,
}

impl Layout {
    pub fn size(self) -> (u32, u32) {
        (2 * self.panel, self.panel + BAR)
    }
}

/// `draw.wgsl`'s `View`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct View {
    panel: u32,
    bar: u32,
    grid: u32,
    side: u32,
    pointer: [f32; 2],
    box_half: f32,
    srgb: u32,
}

/// What one frame shows besides the decoded images.
pub struct Frame {
    /// The pointer in panel fractions.
    pub pointer: (f32, f32),
    pub grid: bool,
    /// Half the grid's extent in panel fractions (drawn as a box around the pointer).
    pub box_half: f32,
}

pub struct Renderer {
    layout: Layout,
    srgb: bool,
    pipeline: wgpu::RenderPipeline,
    bind_group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    status: wgpu::Texture,
}

fn texture(device: &wgpu::Device, label: &str, size: (u32, u32)) -> wgpu::Texture {
    let usage = wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST;
    crate::host::rgba8_texture(device, label, size, usage)
}

fn write_rgba(queue: &wgpu::Queue, texture: &wgpu::Texture, rgba: &[u8]) {
    queue.write_texture(
        texture.as_image_copy(),
        rgba,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(4 * texture.width()),
            rows_per_image: None,
        },
        texture.size(),
    );
}

impl Renderer {
    /// A renderer into targets of `format` laid out as `layout`, reading the decoded images
    /// from `images` (`[GRID², 784]` f32, written by the engine) and the dots panel `plane`
    /// (RGBA8, `panel`×`panel`).
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        format: wgpu::TextureFormat,
        layout: Layout,
        images: &wgpu::Buffer,
        plane: &[u8],
    ) -> Renderer {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("explorer"),
            source: wgpu::ShaderSource::Wgsl(include_str!("draw.wgsl").into()),
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("explorer"),
            layout: None,
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("cover"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: Default::default(),
            depth_stencil: None,
            multisample: Default::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("shade"),
                compilation_options: Default::default(),
                targets: &[Some(format.into())],
            }),
            multiview_mask: None,
            cache: None,
        });
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("explorer view"),
            size: size_of::<View>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let panel = texture(device, "explorer plane", (layout.panel, layout.panel));
        write_rgba(queue, &panel, plane);
        let status = texture(device, "explorer status", (layout.size().0, BAR));
        let (panel_view, status_view) = (
            panel.create_view(&Default::default()),
            status.create_view(&Default::default()),
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("explorer"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: images.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::TextureView(&panel_view),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: wgpu::BindingResource::TextureView(&status_view),
                },
            ],
        });
        Renderer {
            layout,
            srgb: format.is_srgb(),
            pipeline,
            bind_group,
            uniform,
            status,
        }
    }

    /// Redraws the status line with `text`.
    pub fn set_status(&self, queue: &wgpu::Queue, text: &str) {
        let width = self.layout.size().0 as usize;
        let mut rgba = BACKGROUND.repeat(width * BAR as usize);
        let top = (BAR as usize - latent::io::GLYPH.1 * TEXT_SCALE) / 2;
        latent::io::draw_text(&mut rgba, width, 4, (8, top), text, TEXT_SCALE, 230);
        write_rgba(queue, &self.status, &rgba);
    }

    /// Records the frame into `target` (after the engine's submitted decode on the same queue).
    pub fn encode(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        target: &wgpu::TextureView,
        frame: &Frame,
    ) -> wgpu::CommandBuffer {
        let panel = self.layout.panel as f32;
        let view = View {
            panel: self.layout.panel,
            bar: BAR,
            grid: if frame.grid { GRID as u32 } else { 1 },
            side: SIDE as u32,
            pointer: [frame.pointer.0 * panel, frame.pointer.1 * panel],
            box_half: if frame.grid {
                frame.box_half * panel
            } else {
                0.0
            },
            srgb: u32::from(self.srgb),
        };
        queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(&view));
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("explorer"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: target,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                ..Default::default()
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.draw(0..3, 0..1);
        }
        encoder.finish()
    }
}

/// The host buffer the decoder writes into: room for the grid's `GRID²` images.
pub fn image_buffer(device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("explorer images"),
        size: (4 * GRID * GRID * PIXELS) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// An offscreen target of the layout's size, readable for a PNG.
pub fn offscreen(device: &wgpu::Device, layout: Layout) -> wgpu::Texture {
    let usage = wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC;
    crate::host::rgba8_texture(device, "explorer offscreen", layout.size(), usage)
}

/// The latent panel's background (RGBA8, `side`×`side`): the plane's axes in grey, a 3×3 dot
/// per test image at `dots` (panel fractions) in its class's colour, and the legend (each
/// class's name in its colour) in the top right corner.
pub fn plane_image(side: u32, dots: &[(f32, f32)], labels: &[u8], names: &[&str]) -> Vec<u8> {
    let s = side as usize;
    let mut rgba = BACKGROUND.repeat(s * s);
    let mut put = |x: usize, y: usize, c: [u8; 3]| {
        if x < s && y < s {
            rgba[4 * (y * s + x)..4 * (y * s + x) + 3].copy_from_slice(&c);
        }
    };
    for k in 0..s {
        put(s / 2, k, [70, 70, 76]);
        put(k, s / 2, [70, 70, 76]);
    }
    let colour = |label: usize| latent::io::PALETTE[label % 10];
    for (&(fx, fy), &label) in dots.iter().zip(labels) {
        if !(0.0..1.0).contains(&fx) || !(0.0..1.0).contains(&fy) {
            continue;
        }
        let (x, y) = ((fx * side as f32) as usize, (fy * side as f32) as usize);
        for (dx, dy) in (0..9).map(|k| (k % 3, k / 3)) {
            put(
                (x + dx).wrapping_sub(1),
                (y + dy).wrapping_sub(1),
                colour(label as usize),
            );
        }
    }
    // The legend: the names drawn as a mask, then inked in their class's colour.
    let width = (names.iter().map(|n| latent::io::text_width(n, 1)).max()).unwrap_or(0);
    let line = latent::io::GLYPH.1 + 3;
    let left = s.saturating_sub(width + 6);
    let backing =
        (left.saturating_sub(3)..s).flat_map(|x| (0..6 + names.len() * line).map(move |y| (x, y)));
    for (x, y) in backing {
        put(x, y, [BACKGROUND[0], BACKGROUND[1], BACKGROUND[2]]);
    }
    let mut mask = vec![0u8; s * s];
    for (class, name) in names.iter().enumerate() {
        latent::io::draw_text(
            &mut mask,
            s,
            1,
            (left, 4 + class * line),
            name,
            1,
            class as u8 + 1,
        );
    }
    for (i, &m) in mask.iter().enumerate() {
        if m > 0 {
            put(i % s, i / s, colour(m as usize - 1));
        }
    }
    rgba
}
