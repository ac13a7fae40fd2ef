//! Fashion-MNIST: finds the four IDX files, checks them, and holds the train and test splits
//! as f32 pixels in [0, 1]. Tested by `tests/data.rs` (real data and broken copies).

use super::idx;
use crate::{DataProblem, Error, Result};
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

/// One split: images as f32 in [0, 1] (pixel / 255), row-major [n, rows·cols], and labels.
#[derive(Clone, Debug)]
pub struct Split {
    images: Vec<f32>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl Split {
    /// A split from images (row-major [n, rows·cols], values in [0, 1]) and their labels: for
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

    /// All images, [n, rows·cols].
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
}

impl FashionMnist {
    /// Loads from the first folder, in [`FashionMnist::search_path`] order, that holds any of
    /// the four files (`train-images-idx3-ubyte[.gz]`, …); a folder with only some of them is
    /// an error rather than a reason to look further.
    pub fn load(dir: Option<&Path>) -> Result<FashionMnist> {
        let searched = Self::search_path(dir);
        let found = searched
            .iter()
            .find(|d| FILES.iter().any(|f| locate(d, f).is_some()));
        match found {
            Some(d) => Self::load_dir(d),
            None => Err(Error::DataMissing {
                file: FILES[0].into(),
                searched,
            }),
        }
    }

    /// The folders [`FashionMnist::load`] searches, in order: `dir`, `$LATENT_DATA`,
    /// `/usr/share/datasets/fashion-mnist`.
    pub fn search_path(dir: Option<&Path>) -> Vec<PathBuf> {
        let env = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty());
        dir.map(Path::to_path_buf)
            .into_iter()
            .chain(env.map(PathBuf::from))
            .chain([PathBuf::from(SYSTEM_DIR)])
            .collect()
    }

    /// Loads from exactly this folder.
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
        Ok(FashionMnist {
            train: train?,
            test: test?,
            dir: dir.to_path_buf(),
        })
    }

    /// Class names, indexed by label.
    pub fn class_names(&self) -> &'static [&'static str; 10] {
        &CLASS_NAMES
    }
}

/// `dir/name` if it exists, else `dir/name.gz` if that exists.
fn locate(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// Reads one split and checks it against Fashion-MNIST's shape: 28×28 images, one label in
/// 0..10 per image.
fn load_split(images_path: &Path, labels_path: &Path) -> Result<Split> {
    let images = idx::read_images(images_path)?;
    if (images.rows, images.cols) != (SIDE, SIDE) {
        return Err(Error::Data {
            path: images_path.to_path_buf(),
            problem: DataProblem::Dimensions {
                expected: [SIDE, SIDE],
                found: [images.rows, images.cols],
            },
        });
    }
    let labels = idx::read_labels(labels_path)?;
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
    Ok(Split {
        images: images.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels,
        rows: images.rows,
        cols: images.cols,
    })
}
