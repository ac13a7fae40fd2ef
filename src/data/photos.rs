//! Colour photographs as colorization data: every PNG and JPEG of a folder, scaled down so that
//! its shorter side is at most a given size, cut into square patches at a fixed stride and
//! turned into grey + chroma (`Colourised`). Tests: `tests/colorize.rs` (files made in a temp folder).

use super::colour::Colourised;
use crate::engine::{Error, Result};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// How photographs become patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchConfig {
    /// Side of the square patches in pixels (the model's image side).
    pub patch: usize,
    /// Pixels between the corners of neighbouring patches (≤ `patch`: patches overlap).
    pub stride: usize,
    /// Larger images are scaled down (triangle filter) so that their shorter side is this many
    /// pixels; 0 keeps every image at its own size.
    pub max_side: usize,
}

impl PatchConfig {
    /// The smallest image (width, height) that gives a training and a test patch: the test
    /// strip is at least one patch wide and so is what is left of the image beside it.
    pub fn smallest(&self) -> (usize, usize) {
        (2 * self.patch, self.patch)
    }
}

/// What is wrong with a photograph folder ([`Error::Photos`]).
#[derive(Debug, thiserror::Error)]
pub enum PhotoProblem {
    #[error("does not exist")]
    Missing,
    #[error("is not a folder")]
    NotAFolder,
    #[error(
        "holds no readable PNG or JPEG image ({} skipped{}; {ignored} files of other types)",
        skipped.len(),
        skipped_list(skipped)
    )]
    NoImages {
        skipped: Vec<(PathBuf, String)>,
        ignored: usize,
    },
    #[error(
        "is {width}×{height} pixels (after scaling), smaller than the {}×{} that one training \
         and one test patch of {patch}×{patch} need",
        2 * patch,
        patch
    )]
    TooSmall {
        width: usize,
        height: usize,
        patch: usize,
    },
}

fn skipped_list(skipped: &[(PathBuf, String)]) -> String {
    skipped
        .iter()
        .map(|(p, why)| format!(": `{}` ({why})", p.display()))
        .collect()
}

/// One photograph that gave patches.
#[derive(Clone, Debug)]
pub struct Photo {
    pub path: PathBuf,
    /// The file's size in bytes (part of the data's identity).
    pub bytes: u64,
    /// Its size in pixels as cut, after scaling.
    pub size: (usize, usize),
    pub train_patches: usize,
    pub test_patches: usize,
}

/// Patches of a folder's photographs, split by position: the right-hand fifth of every image
/// (at least one patch wide) gives the test patches and the rest the training patches, so no
/// test patch overlaps a training patch. Both sets interleave the images (patch j of every
/// image before patch j + 1 of any), so the first n patches of a set come from all images.
pub struct Photos {
    pub train: Colourised,
    pub test: Colourised,
    /// The photograph (an index into `photos`) each test patch was cut from.
    pub test_sources: Vec<usize>,
    pub photos: Vec<Photo>,
    /// PNG or JPEG files that could not be decoded, with the reason; they were left out.
    pub skipped: Vec<(PathBuf, String)>,
    /// Files of other types in the folder, not read.
    pub ignored: usize,
    pub config: PatchConfig,
}

fn is_image(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    ["png", "jpg", "jpeg"]
        .iter()
        .any(|e| ext.eq_ignore_ascii_case(e))
}

/// RGB pixels `[h, w, 3]` in [0, 1] of the image at `path`, scaled down to `max_side`.
fn decode(path: &Path, max_side: usize) -> std::result::Result<(Vec<f32>, usize, usize), String> {
    let img = image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let short = w.min(h);
    let img = match max_side {
        s if s > 0 && short > s => {
            let (nw, nh) = ((w * s).div_ceil(short), (h * s).div_ceil(short));
            image::imageops::resize(&img, nw as u32, nh as u32, FilterType::Triangle)
        }
        _ => img,
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((
        img.into_raw().iter().map(|&v| v as f32 / 255.0).collect(),
        w,
        h,
    ))
}

/// The patches `[n, p, p, 3]` of the columns `x0..x1` of `rgb` (`[h, w, 3]`), row by row.
fn cut(
    rgb: &[f32],
    w: usize,
    h: usize,
    (x0, x1): (usize, usize),
    c: &PatchConfig,
) -> Vec<Vec<f32>> {
    let p = c.patch;
    let mut out = Vec::new();
    for y in (0..=h - p).step_by(c.stride) {
        for x in (x0..=x1 - p).step_by(c.stride) {
            let mut patch = Vec::with_capacity(p * p * 3);
            for row in y..y + p {
                patch.extend_from_slice(&rgb[(row * w + x) * 3..(row * w + x + p) * 3]);
            }
            out.push(patch);
        }
    }
    out
}

/// Patch j of every image, then patch j + 1, …: `[n, p, p, 3]` flat and the image each came from.
fn interleave(per_image: &[Vec<Vec<f32>>]) -> (Vec<f32>, Vec<usize>) {
    let longest = per_image.iter().map(Vec::len).max().unwrap_or(0);
    let (mut flat, mut sources) = (Vec::new(), Vec::new());
    for j in 0..longest {
        for (i, patches) in per_image.iter().enumerate() {
            if let Some(p) = patches.get(j) {
                flat.extend_from_slice(p);
                sources.push(i);
            }
        }
    }
    (flat, sources)
}

impl Photos {
    /// Reads every `.png`, `.jpg` and `.jpeg` file of `dir` (not its sub-folders) in name order;
    /// files that do not decode are skipped and listed in `skipped`. Refused: a missing folder,
    /// one with no readable image, and any image smaller than [`PatchConfig::smallest`].
    pub fn load(dir: &Path, config: PatchConfig) -> Result<Photos> {
        let fail = |problem| Error::Photos {
            path: dir.to_path_buf(),
            problem,
        };
        if !dir.exists() {
            return Err(fail(PhotoProblem::Missing));
        }
        if !dir.is_dir() {
            return Err(fail(PhotoProblem::NotAFolder));
        }
        if config.patch == 0 || config.stride == 0 {
            let why = format!(
                "patch {} and stride {} must be positive",
                config.patch, config.stride
            );
            return Err(Error::bad("Photos::load", why));
        }
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            action: "list the image folder",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                action: "list the image folder",
                path: dir.to_path_buf(),
                source,
            })?;
            if entry.path().is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        let ignored = files.iter().filter(|f| !is_image(f)).count();
        let (mut skipped, mut photos) = (Vec::new(), Vec::new());
        let (mut train, mut test) = (Vec::new(), Vec::new());
        let (small_w, small_h) = config.smallest();
        for path in files.into_iter().filter(|f| is_image(f)) {
            let (rgb, w, h) = match decode(&path, config.max_side) {
                Ok(d) => d,
                Err(why) => {
                    skipped.push((path, why));
                    continue;
                }
            };
            if w < small_w || h < small_h {
                return Err(Error::Photos {
                    path,
                    problem: PhotoProblem::TooSmall {
                        width: w,
                        height: h,
                        patch: config.patch,
                    },
                });
            }
            let strip = (w / 5).max(config.patch);
            let a = cut(&rgb, w, h, (0, w - strip), &config);
            let b = cut(&rgb, w, h, (w - strip, w), &config);
            let bytes = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(source) => {
                    let action = "read the size of";
                    return Err(Error::Io {
                        action,
                        path,
                        source,
                    });
                }
            };
            photos.push(Photo {
                path,
                bytes,
                size: (w, h),
                train_patches: a.len(),
                test_patches: b.len(),
            });
            train.push(a);
            test.push(b);
        }
        if photos.is_empty() {
            return Err(fail(PhotoProblem::NoImages { skipped, ignored }));
        }
        let side = (config.patch, config.patch);
        let (train_rgb, train_sources) = interleave(&train);
        let (test_rgb, test_sources) = interleave(&test);
        Ok(Photos {
            train: Colourised::from_rgb(&train_rgb, train_sources.len(), side)?,
            test: Colourised::from_rgb(&test_rgb, test_sources.len(), side)?,
            test_sources,
            photos,
            skipped,
            ignored,
            config,
        })
    }

    /// The data's identity as checkpoints store it: every photograph's name and size in bytes
    /// and pixels, and how patches are cut.
    pub fn identity(&self) -> String {
        let c = &self.config;
        let files: Vec<String> = (self.photos.iter())
            .map(|p| {
                let name = p.path.file_name().unwrap_or_default().to_string_lossy();
                format!("{name} ({} bytes, {}×{})", p.bytes, p.size.0, p.size.1)
            })
            .collect();
        format!(
            "photographs [{}] in {}×{} patches, stride {}, shorter side at most {}",
            files.join(", "),
            c.patch,
            c.patch,
            c.stride,
            c.max_side
        )
    }
}
