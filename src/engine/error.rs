//! Typed errors of the engine: every failure a user can cause or meet is a value, not a panic.
//! Tested by `kernels-tests/errors.rs`.

/// Everything that can go wrong in `latent`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no GPU adapter found ({detail}). On Debian/Ubuntu without a GPU driver, install the CPU \
         Vulkan driver: `apt-get install mesa-vulkan-drivers libvulkan1`"
    )]
    NoAdapter { detail: String },

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

    #[error("out of GPU memory while allocating {bytes} bytes")]
    OutOfMemory { bytes: u64 },

    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    #[error("{op}: {reason}")]
    BadInput { op: &'static str, reason: String },

    #[error("shader `{name}` is invalid: {message}")]
    Shader { name: String, message: String },

    #[error("GPU error: {0}")]
    Gpu(String),

    #[error("{what} became {value} at step {step}; training stopped (the last checkpoint is from before it)")]
    NonFinite {
        what: &'static str,
        step: u64,
        value: f32,
    },
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
