//! Fashion-MNIST: finds the four IDX files, checks them, and holds the train and test splits
//! as f32 pixels in [0, 1]. Tested by `tests/data.rs` (real data and broken copies).

use super::idx;
use crate::{DataProblem, Engine, Error, FolderProblem, Result, Tensor};
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable naming a folder that holds the files.
pub const DATA_ENV: &str = "LATENT_DATA";
/// Side of a Fashion-MNIST image in pixels.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Class names, indexed by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The four files, without the optional `.gz`: train images and labels, test images and labels.
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// One split: images as f32 in 0..=1 (pixel / 255), row-major `[n, rows·cols]`, and labels.
#[derive(Clone, Debug)]
pub struct Split {
    images: Vec<f32>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl Split {
    /// A split from images (row-major `[n, rows·cols]`, values in 0..=1) and their labels: for
    /// other datasets and synthetic tests.
    pub fn new(images: Vec<f32>, labels: Vec<u8>, rows: usize, cols: usize) -> Result<Split> {
        if rows * cols == 0 || images.len() != labels.len() * rows * cols {
            let why = format!(
                "{} pixels for {} labels of {rows}×{cols} images",
                images.len(),
                labels.len()
            );
            return Err(Error::bad("Split::new", why));
        }
        Ok(Split {
            images,
            labels,
            rows,
            cols,
        })
    }

    /// Images `range` uploaded as `[range.len(), pixels]` (f32).
    pub fn upload(&self, engine: &Engine, range: std::ops::Range<usize>) -> Result<Tensor> {
        let pixels = self.pixels_per_image();
        let images = self.images.get(range.start * pixels..range.end * pixels);
        let why = || format!("images {range:?} of a split of {}", self.len());
        let images = images.ok_or_else(|| Error::bad("Split::upload", why()))?;
        Tensor::from_slice(engine, images, &[range.len(), pixels])
    }

    /// The first `n` examples (all of them when `n` ≥ the length): small runs and tests.
    pub fn take(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images[..n * self.rows * self.cols].to_vec(),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image side lengths (rows, cols).
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Pixels per image.
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// All images, `[n, rows·cols]`.
    pub fn images(&self) -> &[f32] {
        &self.images
    }

    /// All labels, `[n]`.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Image `i`, [rows·cols].
    pub fn image(&self, i: usize) -> &[f32] {
        let p = self.pixels_per_image();
        &self.images[i * p..(i + 1) * p]
    }

    /// Copies the images at `indices` into `out` (cleared first): [indices.len(), rows·cols].
    pub fn gather(&self, indices: &[usize], out: &mut Vec<f32>) {
        out.clear();
        out.reserve(indices.len() * self.pixels_per_image());
        for &i in indices {
            out.extend_from_slice(self.image(i));
        }
    }

    /// Copies the labels at `indices` into `out` (cleared first), as u32 for a GPU tensor.
    pub fn gather_labels(&self, indices: &[usize], out: &mut Vec<u32>) {
        out.clear();
        out.extend(indices.iter().map(|&i| self.labels[i] as u32));
    }
}

/// The Fashion-MNIST train (60,000) and test (10,000) splits.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    pub train: Split,
    pub test: Split,
    /// The folder the files were read from.
    pub dir: PathBuf,
    identity: String,
}

impl FashionMnist {
    /// Loads from the folder [`FashionMnist::resolve`] picks: `dir` (the examples' `--data`),
    /// else `$LATENT_DATA`, else `/usr/share/datasets/fashion-mnist`. A folder that was named
    /// and cannot be used is an error naming it, never a reason to read another copy.
    pub fn load(dir: Option<&Path>) -> Result<FashionMnist> {
        Self::load_dir(&Self::resolve(dir)?)
    }

    /// The folder [`FashionMnist::load`] reads, checked: see [`FashionMnist::resolve_from`].
    pub fn resolve(dir: Option<&Path>) -> Result<PathBuf> {
        Self::resolve_from(dir, std::env::var_os(DATA_ENV).as_deref())
    }

    /// The folder to read given `dir` (`--data`) and `env` (the value of `$LATENT_DATA`; empty
    /// counts as unset): the first of them that is given, which must be a folder holding at
    /// least one of the four files ([`Error::DataFolder`] otherwise: missing, not a folder,
    /// empty), or else the system copy ([`Error::DataMissing`] with the install hint when it
    /// is absent).
    pub fn resolve_from(dir: Option<&Path>, env: Option<&std::ffi::OsStr>) -> Result<PathBuf> {
        let named = match (dir, env.filter(|v| !v.is_empty())) {
            (Some(d), _) => Some((d.to_path_buf(), "--data")),
            (None, Some(v)) => Some((PathBuf::from(v), DATA_ENV)),
            (None, None) => None,
        };
        let Some((dir, given_by)) = named else {
            let system = PathBuf::from(SYSTEM_DIR);
            return match FILES.iter().any(|f| locate(&system, f).is_some()) {
                true => Ok(system),
                false => Err(Error::DataMissing {
                    file: FILES[0].into(),
                    searched: vec![system],
                }),
            };
        };
        let problem = if !dir.exists() {
            FolderProblem::Missing
        } else if !dir.is_dir() {
            FolderProblem::NotAFolder
        } else if !FILES.iter().any(|f| locate(&dir, f).is_some()) {
            FolderProblem::Empty
        } else {
            return Ok(dir);
        };
        Err(Error::DataFolder {
            dir,
            given_by: given_by.into(),
            problem,
        })
    }

    /// Loads from exactly this folder; a missing file is [`Error::DataMissing`] naming it.
    pub fn load_dir(dir: &Path) -> Result<FashionMnist> {
        let path = |name: &str| {
            locate(dir, name).ok_or_else(|| Error::DataMissing {
                file: name.into(),
                searched: vec![dir.to_path_buf()],
            })
        };
        let paths = [
            path(FILES[0])?,
            path(FILES[1])?,
            path(FILES[2])?,
            path(FILES[3])?,
        ];
        // The two splits inflate independently: one thread each.
        let (train, test) = std::thread::scope(|s| {
            let train = s.spawn(|| load_split(&paths[0], &paths[1]));
            let test = load_split(&paths[2], &paths[3]);
            (train.join().expect("train loader panicked"), test)
        });
        let ((train, train_files), (test, test_files)) = (train?, test?);
        let files: Vec<(&PathBuf, idx::Idx)> = paths
            .iter()
            .zip(train_files.into_iter().chain(test_files))
            .collect();
        Ok(FashionMnist {
            train,
            test,
            dir: dir.to_path_buf(),
            identity: identity(&files),
        })
    }

    /// What identifies the data read, for checkpoints to compare: each file's name and size on
    /// disk, a CRC-32 of the four IDX headers and one of the four files' inflated data, e.g.
    /// `train-images-idx3-ubyte.gz 26421880 B, …; headers crc32 0x…; data crc32 0x…`.
    pub fn identity(&self) -> String {
        self.identity.clone()
    }

    /// Class names, indexed by label.
    pub fn class_names(&self) -> &'static [&'static str; 10] {
        &CLASS_NAMES
    }
}

/// [`FashionMnist::identity`] of the four files as read.
fn identity(files: &[(&PathBuf, idx::Idx)]) -> String {
    let (mut headers, mut data) = (crc32fast::Hasher::new(), crc32fast::Hasher::new());
    let sizes: Vec<String> = files
        .iter()
        .map(|(path, f)| {
            headers.update(&f.header);
            data.update(&f.data_crc.to_be_bytes());
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            format!("{name} {} B", f.file_size)
        })
        .collect();
    format!(
        "{}; headers crc32 0x{:08x}; data crc32 0x{:08x}",
        sizes.join(", "),
        headers.finalize(),
        data.finalize()
    )
}

/// `dir/name` if it exists, else `dir/name.gz` if that exists.
fn locate(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// Reads one split and checks it against Fashion-MNIST's shape: 28×28 images, one label in
/// 0..10 per image. Returns it with the two files as read (their data emptied).
fn load_split(images_path: &Path, labels_path: &Path) -> Result<(Split, [idx::Idx; 2])> {
    let mut images_file = idx::read(images_path, idx::IMAGES_MAGIC)?;
    let images = idx::IdxImages {
        n: images_file.dims[0],
        rows: images_file.dims[1],
        cols: images_file.dims[2],
        pixels: std::mem::take(&mut images_file.data),
    };
    if (images.rows, images.cols) != (SIDE, SIDE) {
        return Err(Error::Data {
            path: images_path.to_path_buf(),
            problem: DataProblem::Dimensions {
                expected: [SIDE, SIDE],
                found: [images.rows, images.cols],
            },
        });
    }
    let mut labels_file = idx::read(labels_path, idx::LABELS_MAGIC)?;
    let labels = std::mem::take(&mut labels_file.data);
    let bad_labels = |problem| Error::Data {
        path: labels_path.to_path_buf(),
        problem,
    };
    if labels.len() != images.n {
        return Err(bad_labels(DataProblem::CountMismatch {
            images: images.n,
            labels: labels.len(),
            images_path: images_path.to_path_buf(),
        }));
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= CLASS_NAMES.len())
    {
        return Err(bad_labels(DataProblem::BadLabel {
            index,
            label,
            classes: CLASS_NAMES.len(),
        }));
    }
    let split = Split {
        images: images.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels,
        rows: images.rows,
        cols: images.cols,
    };
    Ok((split, [images_file, labels_file]))
}
