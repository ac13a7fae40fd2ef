//! Typed errors of latent: every failure a user can cause or meet is a value, not a panic.
//! Tested by `kernels-tests/engine.rs`, `tests/data.rs` and `tests/io.rs`.

use std::path::PathBuf;

/// Everything that can go wrong in `latent`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no GPU adapter found ({detail}). On Debian/Ubuntu without a GPU driver, install the CPU \
         Vulkan driver: `apt-get install mesa-vulkan-drivers libvulkan1`"
    )]
    NoAdapter { detail: String },

    #[error("LATENT_BACKEND names an unknown backend `{name}`; valid names: {}", valid.join(", "))]
    UnknownBackend {
        name: String,
        valid: &'static [&'static str],
    },

    #[error("could not open a device on adapter `{adapter}`: {reason}")]
    RequestDevice { adapter: String, reason: String },

    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },

    #[error("{op}: expected a {expected} tensor, got {got}")]
    DTypeMismatch {
        op: &'static str,
        expected: &'static str,
        got: &'static str,
    },

    #[error("{op}: empty tensor of shape {shape:?}; tensors must hold at least one element")]
    EmptyTensor { op: &'static str, shape: Vec<usize> },

    #[error(
        "{op}: a binding of {bytes} bytes exceeds the device's storage-binding limit of {limit} \
         bytes; split the tensor"
    )]
    BindingTooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
    },

    #[error("a buffer of {bytes} bytes exceeds the device's buffer-size limit of {limit} bytes")]
    BufferTooLarge { bytes: u64, limit: u64 },

    #[error(
        "{op}: a tensor belongs to another engine (made on another device or by another \
         `Engine`); move it with `to_vec` and `from_slice`"
    )]
    ForeignTensor { op: &'static str },

    #[error("{op}: the buffer was created on another device than the engine's")]
    ForeignBuffer { op: &'static str },

    #[error(
        "{op}: the buffer's usage {usage:?} lacks {missing:?} (the engine binds, clears, copies \
         and reads back tensors: give STORAGE | COPY_SRC | COPY_DST)"
    )]
    BufferUsage {
        op: &'static str,
        usage: wgpu::BufferUsages,
        missing: wgpu::BufferUsages,
    },

    #[error(
        "{op}: a view of {len} elements at element {at} of a tensor of {numel}: a view lies \
         inside its tensor and starts a multiple of {align} elements (the device's \
         storage-offset alignment) from its buffer's start"
    )]
    BadView {
        op: &'static str,
        at: usize,
        len: usize,
        numel: usize,
        align: usize,
    },

    #[error("out of GPU memory while allocating {bytes} bytes")]
    OutOfMemory { bytes: u64 },

    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    #[error("{op}: {reason}")]
    BadInput { op: &'static str, reason: String },

    #[error(
        "{op}: pixel {index} is {value}, not a grey level v/255 of an 8-bit image; only 8-bit \
         images are held on the device as bytes (train on the host split instead)"
    )]
    NotEightBit {
        op: &'static str,
        index: usize,
        value: f32,
    },

    #[error("{shader}::{entry}: {problem}")]
    Binding {
        shader: &'static str,
        entry: &'static str,
        problem: BindingProblem,
    },

    #[error("shader `{name}` is invalid: {message}")]
    Shader { name: String, message: String },

    #[error("GPU error: {0}")]
    Gpu(String),

    #[error("{what} became {value} at step {step}; training stopped")]
    NonFinite {
        what: &'static str,
        step: u64,
        value: f32,
    },

    #[error(
        "tensor `{tensor}` holds non-finite values after step {step}; training stopped, {}",
        kept_note(kept)
    )]
    Diverged {
        tensor: String,
        step: u64,
        /// The last good checkpoint, left as it was; `None` when none was written.
        kept: Option<PathBuf>,
    },

    #[error(
        "metric `{name}` is {value}; metrics.json holds finite numbers only (JSON has no NaN or \
         Infinity), so nothing was written"
    )]
    NonFiniteMetric { name: String, value: f64 },

    #[error(
        "rank {rank} of {ranks}: its {what} differ from rank 0's; every rank of a data-parallel \
         run must start the same command on the same data and checkpoint"
    )]
    RankMismatch {
        rank: usize,
        ranks: usize,
        what: &'static str,
    },

    #[error("rank {rank} failed at the start of the data-parallel run (see its own message)")]
    RankFailed { rank: usize },

    #[error("MPI: {0}")]
    Mpi(String),

    #[error("{flag} {reason}")]
    BadFlag { flag: String, reason: String },

    #[error("could not {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "Fashion-MNIST file `{file}[.gz]` not found (searched {}). Install the data with \
         `apt-get install dataset-fashion-mnist` (it goes to /usr/share/datasets/fashion-mnist), \
         or point LATENT_DATA or --data at a folder holding train-images-idx3-ubyte.gz, \
         train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz",
        list_paths(searched)
    )]
    DataMissing {
        file: String,
        searched: Vec<PathBuf>,
    },

    #[error(
        "data folder `{}` (from {given_by}) {problem}; no other copy is used in its place",
        dir.display()
    )]
    DataFolder {
        dir: PathBuf,
        /// Who named the folder: `--data`, `LATENT_DATA`, or the caller.
        given_by: String,
        problem: FolderProblem,
    },

    #[error(
        "data file `{}`: {problem}. If it is the packaged copy, `apt-get install --reinstall \
         dataset-fashion-mnist` restores it",
        path.display()
    )]
    Data { path: PathBuf, problem: DataProblem },

    #[error("checkpoint `{}`: {problem}", path.display())]
    Checkpoint {
        path: PathBuf,
        problem: CheckpointProblem,
    },

    /// A folder of photographs (`--images`), or one image in it.
    #[error("images `{}` {problem}", path.display())]
    Photos {
        path: PathBuf,
        problem: crate::data::photos::PhotoProblem,
    },
}

/// What is wrong with the tensors of a dispatch ([`Error::Binding`]); `variable` is the WGSL
/// variable, `used` the storage variables the entry point uses.
#[derive(Debug, thiserror::Error)]
pub enum BindingProblem {
    #[error("no tensor for `{variable}`; the entry point uses [{}]", used.join(", "))]
    Missing { variable: String, used: Vec<String> },

    #[error("`{variable}` is not a storage variable the entry point uses; it uses [{}]", used.join(", "))]
    Unused { variable: String, used: Vec<String> },

    #[error("`{variable}` is named twice")]
    Duplicate { variable: String },

    #[error("`{variable}` is declared `{declared}`; the dispatch binds it as `{requested}`")]
    Access {
        variable: String,
        declared: &'static str,
        requested: &'static str,
    },

    #[error("`{variable}` is an array of {view}, which reads {reads}; got a {got} tensor")]
    ElementType {
        variable: String,
        view: String,
        reads: &'static str,
        got: &'static str,
    },

    #[error(
        "`{variable}` is an array of {view} ({view_bytes} bytes each); a tensor of {bytes} bytes is not a whole number of them"
    )]
    Length {
        variable: String,
        view: String,
        view_bytes: u64,
        bytes: u64,
    },

    #[error("`{variable}` is written and shares its buffer with `{other}`")]
    Aliased { variable: String, other: String },

    #[error(
        "the params uniform takes {expected} bytes (0: none; up to the next multiple of 16 with padding); got {got}"
    )]
    Params { expected: u64, got: u64 },
}

/// What is wrong with an IDX data file ([`Error::Data`]).
#[derive(Debug, thiserror::Error)]
pub enum DataProblem {
    #[error("the gzip stream is corrupt or truncated: {0}")]
    Gzip(String),

    #[error("magic number 0x{found:08x}, expected 0x{expected:08x} ({})", idx_kind(*expected))]
    BadMagic { expected: u32, found: u32 },

    #[error("truncated: the header promises {expected} bytes, the file holds {found}")]
    Truncated { expected: u64, found: u64 },

    #[error("{extra} bytes of trailing data after the {expected} bytes the header promises")]
    TrailingData { expected: u64, extra: u64 },

    #[error(
        "the gzip stream inflates to more than the {expected} bytes the header promises \
         (stopped reading there)"
    )]
    Oversized { expected: u64 },

    #[error("images are {}×{}, expected {}×{}", found[0], found[1], expected[0], expected[1])]
    Dimensions {
        expected: [usize; 2],
        found: [usize; 2],
    },

    #[error("{labels} labels for the {images} images of `{}`", images_path.display())]
    CountMismatch {
        images: usize,
        labels: usize,
        images_path: PathBuf,
    },

    #[error("label {label} at index {index} is not a class (0..{classes})")]
    BadLabel {
        index: usize,
        label: u8,
        classes: usize,
    },
}

/// Why a data folder that was asked for cannot be used ([`Error::DataFolder`]).
#[derive(Debug, thiserror::Error)]
pub enum FolderProblem {
    #[error("does not exist")]
    Missing,

    #[error("is not a folder")]
    NotAFolder,

    #[error(
        "holds none of the Fashion-MNIST files (train-images-idx3-ubyte[.gz], \
         train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])"
    )]
    Empty,
}

/// What is wrong with a checkpoint or a request made of it ([`Error::Checkpoint`]).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointProblem {
    #[error(
        "not a readable safetensors file ({0}); it is truncated or corrupt: use an older \
         checkpoint or retrain"
    )]
    Corrupt(String),

    #[error("no tensor `{name}`; the file holds [{}]", available.join(", "))]
    MissingTensor {
        name: String,
        available: Vec<String>,
    },

    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("tensor `{name}` is {found}, expected {expected}")]
    WrongDType {
        name: String,
        expected: &'static str,
        found: String,
    },

    #[error("tensor name `{name}` is given twice")]
    DuplicateName { name: String },

    #[error("no metadata key `{key}`")]
    MissingMeta { key: String },

    #[error("metadata `{key}` = `{value}` is not a valid {expected}")]
    BadMeta {
        key: String,
        value: String,
        expected: &'static str,
    },

    #[error("it holds tensor `{name}` of shape {shape:?}, which this model does not have")]
    UnexpectedTensor { name: String, shape: Vec<usize> },

    #[error("tensor `{name}` holds {value} at element {index}; it cannot be trained or evaluated")]
    NonFiniteTensor {
        name: String,
        index: usize,
        value: f32,
    },

    #[error("it was saved with {key} = {saved}, this run has {key} = {wanted}")]
    MetaMismatch {
        key: String,
        saved: String,
        wanted: String,
    },
}

/// Where a stopped run left its last good checkpoint, for [`Error::Diverged`].
fn kept_note(kept: &Option<PathBuf>) -> String {
    match kept {
        Some(p) => format!("the last good checkpoint `{}` is kept", p.display()),
        None => "no checkpoint had been written yet".to_string(),
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// What an IDX magic number announces, for error messages.
fn idx_kind(magic: u32) -> &'static str {
    match magic {
        0x0000_0803 => "IDX images: u8, [n, rows, cols]",
        0x0000_0801 => "IDX labels: u8, [n]",
        _ => "IDX",
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::BadInput`].
    pub fn bad(op: &'static str, reason: impl Into<String>) -> Self {
        Error::BadInput {
            op,
            reason: reason.into(),
        }
    }
}
