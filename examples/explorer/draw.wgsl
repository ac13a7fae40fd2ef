// The explorer's one render pass: the latent panel (dots pre-drawn in `plane`, the pointer and
// the grid's extent drawn here) on the left, the decoded images read straight from the
// decoder's output buffer on the right, the status line below. Pixel-exact: every texel is a
// function of the integer pixel position, so a headless frame can be compared with the batch path.

struct View {
    // Side of each square panel, and the status bar's height below them (pixels).
    panel: u32,
    bar: u32,
    // Images per side on the right (1, or the grid's side) and their side in pixels (28).
    grid: u32,
    side: u32,
    // The pointer in panel pixels; the half-width of the grid's extent box (0: no box).
    pointer: vec2<f32>,
    box_half: f32,
    // 1 when the target stores sRGB: the shader then writes linear values.
    srgb: u32,
}

@group(0) @binding(0) var<uniform> view: View;
@group(0) @binding(1) var<storage, read> images: array<f32>;
@group(0) @binding(2) var plane: texture_2d<f32>;
@group(0) @binding(3) var status: texture_2d<f32>;

@vertex
fn cover(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    // One triangle over the whole target.
    let xy = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return vec4<f32>(xy * 2.0 - 1.0, 0.0, 1.0);
}

// The latent panel: dots, then the pointer's cross and the grid's box in white.
fn latent_panel(p: vec2<u32>) -> vec3<f32> {
    var c = textureLoad(plane, p, 0).rgb;
    let d = abs(vec2<f32>(p) + 0.5 - view.pointer);
    let cross = (d.x < 1.0 && d.y < 9.0) || (d.y < 1.0 && d.x < 9.0);
    let edge = max(d.x, d.y);
    let frame = view.box_half > 0.0 && abs(edge - view.box_half) < 1.0;
    if (cross || frame) {
        c = vec3<f32>(1.0);
    }
    return c;
}

// The decoded images, nearest-pixel enlarged by a whole factor, centred in the panel.
fn image_panel(p: vec2<u32>) -> vec3<f32> {
    let scale = max(view.panel / (view.side * view.grid), 1u);
    let block = view.side * scale;
    let offset = (view.panel - min(view.grid * block, view.panel)) / 2u;
    if (any(p < vec2<u32>(offset)) || any(p >= vec2<u32>(offset + view.grid * block))) {
        return vec3<f32>(0.1);
    }
    let local = p - vec2<u32>(offset);
    let cell = local / block;
    let pixel = (local % block) / scale;
    let image = cell.y * view.grid + cell.x;
    let v = clamp(images[(image * view.side + pixel.y) * view.side + pixel.x], 0.0, 1.0);
    return vec3<f32>(v);
}

fn to_linear(c: vec3<f32>) -> vec3<f32> {
    let low = c / 12.92;
    let high = pow((c + 0.055) / 1.055, vec3<f32>(2.4));
    return select(high, low, c <= vec3<f32>(0.04045));
}

@fragment
fn shade(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let p = vec2<u32>(position.xy);
    var c: vec3<f32>;
    if (p.y >= view.panel) {
        c = textureLoad(status, vec2<u32>(p.x, p.y - view.panel), 0).rgb;
    } else if (p.x < view.panel) {
        c = latent_panel(p);
    } else {
        c = image_panel(vec2<u32>(p.x - view.panel, p.y));
    }
    if (view.srgb == 1u) {
        c = to_linear(c);
    }
    return vec4<f32>(c, 1.0);
}
