//! The explorer's model side: a checkpoint of `vae`, `cvae`, `conv_vae` or `vqvae` rebuilt from
//! its metadata, the latent plane under the pointer, and each frame's decode into the host's
//! buffer (recorded and submitted, never read back). Tested with the example.

use latent::data::Split;
use latent::io::{self, Checkpoint};
use latent::kernels::elementwise::{self as ew, Unary};
use latent::models::conv_vae::ConvVae;
use latent::models::latent::{attribute_vector, encode_split};
use latent::models::vae::{Autoencoder, LABEL_SCALE, Vae, VaeConfig};
use latent::models::vqvae::{VqVae, VqVaeConfig};
use latent::nn::Module;
use latent::nn::vq::{Ema, VqConfig};
use latent::tape::Tape;
use latent::{DType, Engine, Error, Result, Tensor};

/// Side of a Fashion-MNIST image, and its pixels.
pub const SIDE: usize = 28;
pub const PIXELS: usize = SIDE * SIDE;
/// Images per side of the grid of neighbouring decodings.
pub const GRID: usize = 5;
/// Fashion-MNIST's classes.
pub const CLASSES: usize = 10;

fn bad_checkpoint(reason: String) -> Error {
    Error::BadFlag {
        flag: "--checkpoint".into(),
        reason,
    }
}

/// What a checkpoint holds, read from its metadata alone (before any device is opened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// `vae`, `cvae`, `conv_vae` or `vqvae`.
    pub name: &'static str,
    /// Floats of one latent (D·h·w for the VQ-VAE's continuous z_e).
    pub latent: usize,
    /// Classes of the condition (0: unconditional).
    pub classes: usize,
}

impl Kind {
    /// Reads and checks `ckpt`'s metadata: one of the four models, on 28×28 grey images.
    pub fn of(ckpt: &Checkpoint) -> Result<Kind> {
        let model = ckpt.meta("model")?;
        let kind = match model {
            "mlp-vae" => {
                let classes: usize = ckpt.meta_parse("classes")?;
                let input: usize = ckpt.meta_parse("input")?;
                if input != PIXELS {
                    return Err(bad_checkpoint(format!(
                        "the VAE decodes {input} pixels; the explorer draws {SIDE}×{SIDE} images"
                    )));
                }
                Kind {
                    name: if classes > 0 { "cvae" } else { "vae" },
                    latent: ckpt.meta_parse("latent")?,
                    classes,
                }
            }
            "conv-vae-w2" => Kind {
                name: "conv_vae",
                latent: ckpt.meta_parse("latent")?,
                classes: 0,
            },
            "vqvae" => {
                let config = vq_config(ckpt)?;
                let (h, w) = config.latent_size();
                Kind {
                    name: "vqvae",
                    latent: config.vq.dim * h * w,
                    classes: 0,
                }
            }
            other => {
                return Err(bad_checkpoint(format!(
                    "`{}` holds a `{other}` model; the explorer shows checkpoints of vae, \
                     cvae, conv_vae and vqvae",
                    ckpt.path().display()
                )));
            }
        };
        if kind.classes > CLASSES {
            return Err(bad_checkpoint(format!(
                "the model has {} classes; Fashion-MNIST has {CLASSES}",
                kind.classes
            )));
        }
        Ok(kind)
    }
}

/// The VQ-VAE's architecture from its checkpoint's metadata (28×28 grey images only).
fn vq_config(ckpt: &Checkpoint) -> Result<VqVaeConfig> {
    let image = ckpt.meta("image")?;
    let grey = format!("{:?}", [1, SIDE, SIDE]);
    if image != grey {
        return Err(bad_checkpoint(format!(
            "the VQ-VAE works on images {image}; the explorer draws {grey}"
        )));
    }
    Ok(VqVaeConfig {
        hidden: ckpt.meta_parse("hidden")?,
        res_hidden: ckpt.meta_parse("res_hidden")?,
        res_blocks: ckpt.meta_parse("res_blocks")?,
        stages: ckpt.meta_parse("stages")?,
        vq: VqConfig {
            codes: ckpt.meta_parse("codes")?,
            dim: ckpt.meta_parse("dim")?,
            ema: ckpt.meta_parse::<bool>("ema")?.then(Ema::default),
            ..VqConfig::default()
        },
        ..VqVaeConfig::default()
    })
}

/// A decoder the explorer can drive.
pub enum Model {
    /// The MLP VAE, the CVAE or the convolutional VAE: z → sigmoid(logits).
    Vae(Box<dyn Autoencoder>),
    /// The VQ-VAE: continuous z_e → nearest codes → decoder.
    Vq(Box<VqVae>),
}

impl Model {
    /// The model saved in `ckpt` (a trainer's checkpoint or the model alone), in evaluation
    /// mode; its architecture is rebuilt from the metadata and every tensor checked.
    pub fn load(engine: &Engine, ckpt: &Checkpoint) -> Result<(Model, Kind)> {
        let kind = Kind::of(ckpt)?;
        let model = match kind.name {
            "vqvae" => Model::Vq(Box::new(VqVae::new(engine, vq_config(ckpt)?, 0)?)),
            "conv_vae" => Model::Vae(Box::new(ConvVae::new(engine, kind.latent, 0)?)),
            _ => {
                let hidden = ckpt.meta("hidden")?;
                let hidden = parse_list(hidden)
                    .ok_or_else(|| bad_checkpoint(format!("hidden widths `{hidden}`")))?;
                let label_scale = match kind.classes {
                    0 => LABEL_SCALE,
                    _ => ckpt.meta_parse("label_scale")?,
                };
                let config = VaeConfig {
                    input: PIXELS,
                    hidden,
                    latent: kind.latent,
                    classes: kind.classes,
                    label_scale,
                };
                Model::Vae(Box::new(Vae::new(engine, config, 0)?))
            }
        };
        let (module, describe) = match &model {
            Model::Vae(m) => (m.as_ref() as &dyn Module, m.describe()),
            Model::Vq(m) => (m.as_ref() as &dyn Module, m.config.describe()),
        };
        ckpt.expect_meta(&describe)?;
        io::restore_module(ckpt, module)?;
        module.set_training(false);
        Ok((model, kind))
    }

    /// Posterior means (continuous z_e for the VQ-VAE) of every image of `split`, on the host.
    pub fn encode(&self, split: &Split) -> Result<Vec<f32>> {
        match self {
            Model::Vae(m) => encode_split(m.as_ref(), split),
            Model::Vq(m) => {
                let engine = latent::models::vqvae::VqModel::engine(m.as_ref());
                let mut out = Vec::new();
                for start in (0..split.len()).step_by(256) {
                    let n = 256.min(split.len() - start);
                    let x = &split.images()[start * PIXELS..(start + n) * PIXELS];
                    let x = Tensor::from_slice(engine, x, &[n, PIXELS])?;
                    out.extend(m.encode_continuous(&x)?.to_vec::<f32>()?);
                }
                Ok(out)
            }
        }
    }

    /// Records the decoding of `z` `[n, latent]` (condition `c` `[n, classes]` for a CVAE) into
    /// `out` `[n, 784]`, pixel means in [0, 1]: the same kernels as the batch path
    /// (`mean_images`, `decode_continuous`), with the last one writing into the host's buffer.
    pub fn decode_into(&self, z: &Tensor, c: Option<&Tensor>, out: &Tensor) -> Result<()> {
        let n = z.shape()[0];
        match self {
            Model::Vae(m) => {
                let tape = Tape::no_grad(z.engine());
                let logits = m.decode(&tape.input(z), c.map(|c| tape.input(c)).as_ref())?;
                ew::unary_into(Unary::Sigmoid, logits.value(), out)
            }
            Model::Vq(m) => {
                let (h, w) = m.config.latent_size();
                let z = z.reshape(&[n, m.config.vq.dim, h, w])?;
                let images = m.decode_continuous(&z)?.reshape(&[n, PIXELS])?;
                ew::affine_into(&images, 1.0, 0.0, out)
            }
        }
    }
}

/// `[512, 256]` → the widths.
fn parse_list(s: &str) -> Option<Vec<usize>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse().ok())
        .collect()
}

/// How the 2-D panel maps into the latent space: z(u, v) = u·e₁ + v·e₂, with (u, v) in
/// [−range, range]², u to the right and v up.
pub struct Plane {
    axes: [Vec<f32>; 2],
    pub range: f32,
}

impl Plane {
    /// The plane of latent axes `i` and `j` of a `latent`-long z (a 2-D latent: all of it).
    pub fn axes(latent: usize, (i, j): (usize, usize), range: f32) -> Plane {
        let unit = |k: usize| (0..latent).map(|a| f32::from(a == k)).collect();
        Plane {
            axes: [unit(i), unit(j)],
            range,
        }
    }

    /// The plane through the origin and the latents `a` and `b` (two test images): (1, 0)
    /// decodes image a, (0, 1) image b, and the segment between them is their interpolation.
    pub fn through(a: Vec<f32>, b: Vec<f32>, range: f32) -> Result<Plane> {
        let plane = Plane {
            axes: [a, b],
            range,
        };
        let [[g11, g12], [_, g22]] = plane.gram();
        if g11 * g22 - g12 * g12 <= 1e-9 * g11 * g22 || g11 == 0.0 || g22 == 0.0 {
            return Err(Error::BadFlag {
                flag: "--images".into(),
                reason: "the two images' latents are parallel (or zero): they span no plane".into(),
            });
        }
        Ok(plane)
    }

    fn gram(&self) -> [[f64; 2]; 2] {
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
        };
        let [e1, e2] = &self.axes;
        let g12 = dot(e1, e2);
        [[dot(e1, e1), g12], [g12, dot(e2, e2)]]
    }

    /// z(u, v).
    pub fn point(&self, (u, v): (f32, f32)) -> Vec<f32> {
        let [e1, e2] = &self.axes;
        e1.iter().zip(e2).map(|(a, b)| u * a + v * b).collect()
    }

    /// The plane coordinates of `z`'s orthogonal projection onto the plane.
    pub fn coords(&self, z: &[f32]) -> (f32, f32) {
        let [[g11, g12], [_, g22]] = self.gram();
        let dot = |a: &[f32]| -> f64 { a.iter().zip(z).map(|(x, y)| *x as f64 * *y as f64).sum() };
        let (b1, b2) = (dot(&self.axes[0]), dot(&self.axes[1]));
        let det = g11 * g22 - g12 * g12;
        (
            ((g22 * b1 - g12 * b2) / det) as f32,
            ((g11 * b2 - g12 * b1) / det) as f32,
        )
    }

    /// Plane coordinates of a panel position given as fractions (0, 0) top left … (1, 1).
    pub fn at(&self, (fx, fy): (f32, f32)) -> (f32, f32) {
        ((2.0 * fx - 1.0) * self.range, (1.0 - 2.0 * fy) * self.range)
    }

    /// The panel fractions of plane coordinates (the inverse of [`Plane::at`]).
    pub fn fraction(&self, (u, v): (f32, f32)) -> (f32, f32) {
        (0.5 + u / (2.0 * self.range), 0.5 - v / (2.0 * self.range))
    }
}

/// What the keys change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Controls {
    /// The CVAE's class.
    pub class: usize,
    /// The class whose attribute vector z moves along, and how far (multiples of it).
    pub attribute: usize,
    pub step: f32,
    /// A `GRID`×`GRID` grid of neighbouring decodings instead of one image.
    pub grid: bool,
}

/// The explorer's latent state: the model, the plane, the test images' latents and attribute
/// vectors, and the engine tensors of each frame's decode (the latents written in, the host's
/// image buffer written out).
pub struct Latents {
    pub model: Model,
    pub kind: Kind,
    pub plane: Plane,
    /// Posterior means of the shown test images `[n, latent]`, and their labels.
    pub test: Vec<f32>,
    pub labels: Vec<u8>,
    /// Per class: mean latent of the class minus the mean of the others.
    attributes: Vec<Vec<f32>>,
    /// One image, or the grid: latents in, pixel means out (the out tensors wrap the host's
    /// buffer).
    z: [Tensor; 2],
    out: [Tensor; 2],
    /// One-hot conditions of a CVAE for (class, 1 image) and (class, the grid).
    condition: Option<(usize, [Tensor; 2])>,
}

impl Latents {
    /// Encodes `test` for the dots and attribute vectors; `images` (`[GRID², 784]` f32, the
    /// host's buffer) receives every frame's decode.
    pub fn new(
        model: Model,
        kind: Kind,
        plane: impl FnOnce(&[f32]) -> Result<Plane>,
        test: &Split,
        images: &wgpu::Buffer,
    ) -> Result<Latents> {
        let engine = match &model {
            Model::Vae(m) => m.engine().clone(),
            Model::Vq(m) => latent::models::vqvae::VqModel::engine(m.as_ref()).clone(),
        };
        let latents = model.encode(test)?;
        let d = kind.latent;
        let labels = test.labels().to_vec();
        let attributes = (0..CLASSES as u8)
            .map(|k| {
                attribute_vector(&latents, d, |i| labels[i] == k).map_err(|_| Error::BadFlag {
                    flag: "--test-images".into(),
                    reason: format!(
                        "the first {} test images must include every class for the \
                         attribute vectors; class {k} is missing",
                        test.len()
                    ),
                })
            })
            .collect::<Result<_>>()?;
        let sizes = [1, GRID * GRID];
        let z = sizes.map(|n| Tensor::zeros(&engine, &[n, d], DType::F32));
        let out =
            sizes.map(|n| Tensor::from_buffer(&engine, images.clone(), &[n, PIXELS], DType::F32));
        let [z0, z1] = z;
        let [o0, o1] = out;
        Ok(Latents {
            plane: plane(&latents)?,
            model,
            kind,
            test: latents,
            labels,
            attributes,
            z: [z0?, z1?],
            out: [o0?, o1?],
            condition: None,
        })
    }

    /// The latents a frame decodes for the pointer at panel fractions `pointer`: the point
    /// under it (moved along the attribute vector), or the `GRID`×`GRID` grid around it,
    /// [`Latents::spacing`] apart in plane units, row by row from the top left.
    pub fn latents(&self, pointer: (f32, f32), c: &Controls) -> Vec<Vec<f32>> {
        let (u, v) = self.plane.at(pointer);
        let shift =
            |z: Vec<f32>| latent::models::latent::shift(&z, &self.attributes[c.attribute], c.step);
        if !c.grid {
            return vec![shift(self.plane.point((u, v)))];
        }
        let s = self.spacing();
        let half = (GRID / 2) as f32;
        (0..GRID * GRID)
            .map(|k| {
                let (col, row) = ((k % GRID) as f32, (k / GRID) as f32);
                shift(
                    self.plane
                        .point((u + (col - half) * s, v - (row - half) * s)),
                )
            })
            .collect()
    }

    /// Plane units between neighbouring decodings of the grid.
    pub fn spacing(&self) -> f32 {
        self.plane.range / 8.0
    }

    /// Records one frame's decode into the host's buffer and submits it: the latents are
    /// written in (an upload), nothing is read back.
    pub fn decode(&mut self, pointer: (f32, f32), c: &Controls) -> Result<()> {
        let which = usize::from(c.grid);
        let zs = self.latents(pointer, c).concat();
        self.z[which].write_from_slice(&zs)?;
        // A CVAE's one-hot conditions, made again only when the class changes.
        let stale = self.condition.as_ref().is_none_or(|(k, _)| *k != c.class);
        if let Model::Vae(m) = &self.model
            && stale
            && let (Some(one), Some(grid)) = (
                m.condition(&[c.class as u8])?,
                m.condition(&[c.class as u8; GRID * GRID])?,
            )
        {
            self.condition = Some((c.class, [one, grid]));
        }
        let cond = self.condition.as_ref().map(|(_, t)| &t[which]);
        self.model
            .decode_into(&self.z[which], cond, &self.out[which])?;
        self.z[which].engine().flush()
    }
}
