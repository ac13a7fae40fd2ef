//! Checkpoints: named f32/u32 GPU tensors and string metadata in a safetensors file, written
//! atomically, checked on load. Tested by `tests/io.rs` (round trip, crash mid-save, corruption).

use super::write_atomic;
use crate::nn::Module;
use crate::{CheckpointProblem, DType, Error, Result, Tensor};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Checkpoint metadata: step, epoch, seed, model configuration… as strings.
pub type Meta = BTreeMap<String, String>;

/// Names of optimizer state in a trainer's checkpoint start with this; a model loaded alone
/// from such a file leaves them unread.
pub const OPTIMIZER_PREFIX: &str = "optim.";

/// Metadata keys of a module's host-side counters ([`Module::counters`]) start with this.
const COUNTER_PREFIX: &str = "counter.";

/// `module`'s tensors and counters with `meta` added, as [`save`] writes them.
pub fn module_contents(module: &dyn Module, meta: &Meta) -> (Vec<(String, Tensor)>, Meta) {
    let mut meta = meta.clone();
    for (name, c) in module.counters() {
        meta.insert(format!("{COUNTER_PREFIX}{name}"), c.get().to_string());
    }
    (module.named_tensors(), meta)
}

/// Saves a module alone (parameters, state, counters) with `meta`, atomically.
pub fn save_module(path: impl AsRef<Path>, module: &dyn Module, meta: &Meta) -> Result<()> {
    let (tensors, meta) = module_contents(module, meta);
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    save(path, &refs, &meta)
}

/// Overwrites `module`'s tensors and counters from `ckpt`: refuses a missing, extra (other than
/// optimizer state), mis-shaped or non-finite tensor, naming it.
pub fn restore_module(ckpt: &Checkpoint, module: &dyn Module) -> Result<()> {
    let tensors = module.named_tensors();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    ckpt.restore_ignoring(&refs, &[OPTIMIZER_PREFIX])?;
    restore_counters(ckpt, module)
}

/// Sets `module`'s host-side counters from `ckpt`'s metadata (all or none).
pub fn restore_counters(ckpt: &Checkpoint, module: &dyn Module) -> Result<()> {
    let counters = module
        .counters()
        .into_iter()
        .map(|(name, c)| {
            Ok((
                c,
                ckpt.meta_parse::<u64>(&format!("{COUNTER_PREFIX}{name}"))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    for (c, v) in counters {
        c.set(v);
    }
    Ok(())
}

/// Loads `path` into `module` after checking that its metadata matches `describe` (the
/// module's architecture): what evaluating or sampling a saved model does.
pub fn load_module(
    path: impl AsRef<Path>,
    module: &dyn Module,
    describe: &[(String, String)],
) -> Result<Checkpoint> {
    let ckpt = load(path)?;
    ckpt.expect_meta(describe)?;
    restore_module(&ckpt, module)?;
    Ok(ckpt)
}

/// Reads the tensors back from the GPU and writes them with `meta` to `path` atomically: a
/// crash at any point leaves either the old file or the new one, never a mixture. A CRC-32
/// of names, shapes, data and metadata goes into the header ([`CHECKSUM_KEY`]).
pub fn save<S: AsRef<str>>(
    path: impl AsRef<Path>,
    tensors: &[(S, &Tensor)],
    meta: &Meta,
) -> Result<()> {
    let path = path.as_ref();
    let mut raws: BTreeMap<&str, Raw> = BTreeMap::new();
    for (name, t) in tensors {
        let name = name.as_ref();
        // safetensors is little-endian, as is every target wgpu runs on: bytes go as they are.
        let raw = Raw {
            dtype: match t.dtype() {
                DType::F32 => Dtype::F32,
                DType::U32 => Dtype::U32,
            },
            shape: t.shape().to_vec(),
            bytes: t.engine().read_bytes(t)?,
        };
        if raws.insert(name, raw).is_some() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                problem: CheckpointProblem::DuplicateName { name: name.into() },
            });
        }
    }
    if meta.contains_key(CHECKSUM_KEY) {
        return Err(Error::bad(
            "checkpoint::save",
            format!("the metadata key `{CHECKSUM_KEY}` is reserved"),
        ));
    }
    let sum = digest(
        raws.iter()
            .map(|(name, r)| (*name, r.dtype, r.shape.as_slice(), r.bytes.as_slice())),
        meta,
    );
    let mut header = meta.clone();
    header.insert(CHECKSUM_KEY.into(), format!("{sum:08x}"));
    let bytes = safetensors::serialize(&raws, None)
        .map_err(|e| Error::bad("checkpoint::save", e.to_string()))?;
    write_atomic(path, &with_metadata(bytes, &header))
}

/// A serialized safetensors file with `meta` added as its `__metadata__`, keys in sorted
/// order. safetensors' own `serialize` takes the metadata as a `HashMap` and writes it in the
/// map's (randomly seeded) iteration order, so identical states would give different files;
/// here the same state always gives the same bytes.
fn with_metadata(file: Vec<u8>, meta: &Meta) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8-byte length")) as usize;
    let tensors = std::str::from_utf8(&file[8..8 + n])
        .expect("safetensors writes a UTF-8 header")
        .trim_end();
    let entries: Vec<String> = meta
        .iter()
        .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
        .collect();
    let rest = tensors.strip_prefix('{').expect("a JSON object");
    let sep = if rest.starts_with('}') { "" } else { "," };
    let mut header = format!("{{\"__metadata__\":{{{}}}{sep}{rest}", entries.join(","));
    // The data must start 8-byte aligned: pad the header with spaces, as safetensors does.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + file.len() - 8 - n);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&file[8 + n..]);
    out
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads and validates a checkpoint file (layout, and the checksum when the file has one);
/// tensors are checked against the caller's expectations when they are asked for.
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref().to_path_buf();
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        action: "read checkpoint",
        path: path.clone(),
        source,
    })?;
    // read_metadata checks the header, every offset and that the file ends where the last
    // tensor does, so any truncation or corruption of the layout stops here.
    let (header, info) = SafeTensors::read_metadata(&bytes).map_err(|e| Error::Checkpoint {
        path: path.clone(),
        problem: CheckpointProblem::Corrupt(e.to_string()),
    })?;
    let start = 8 + header;
    let entries = info
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let (a, b) = t.data_offsets;
            let entry = Entry {
                dtype: t.dtype,
                shape: t.shape.clone(),
                range: (start + a, start + b),
            };
            (name, entry)
        })
        .collect();
    let mut meta: Meta = info
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let ckpt = |meta| Checkpoint {
        path,
        bytes,
        entries,
        meta,
    };
    // Files written by other tools have no checksum; ours are verified.
    let Some(stored) = meta.remove(CHECKSUM_KEY) else {
        return Ok(ckpt(meta));
    };
    let ckpt = ckpt(meta);
    let sum = digest(
        ckpt.entries.iter().map(|(name, e)| {
            let data = &ckpt.bytes[e.range.0..e.range.1];
            (name.as_str(), e.dtype, e.shape.as_slice(), data)
        }),
        &ckpt.meta,
    );
    if u32::from_str_radix(&stored, 16).ok() != Some(sum) {
        return Err(ckpt.error(CheckpointProblem::Corrupt(format!(
            "checksum mismatch: the file says {stored}, its contents give {sum:08x}"
        ))));
    }
    Ok(ckpt)
}

/// Metadata key of the checksum written by [`save`] and verified by [`load`].
pub const CHECKSUM_KEY: &str = "latent.crc32";

/// CRC-32 of everything a checkpoint holds, independent of the file layout: each tensor in
/// name order (name, dtype, shape, bytes), then each metadata pair, every field
/// length-prefixed so that no two different contents hash the same sequence.
fn digest<'a>(
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
    meta: &Meta,
) -> u32 {
    let mut h = crc32fast::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (name, dtype, shape, data) in tensors {
        field(name.as_bytes());
        field(format!("{dtype:?}").as_bytes());
        let dims: Vec<u8> = shape
            .iter()
            .flat_map(|&d| (d as u64).to_le_bytes())
            .collect();
        field(&dims);
        field(data);
    }
    for (key, value) in meta {
        field(key.as_bytes());
        field(value.as_bytes());
    }
    h.finalize()
}

/// A loaded checkpoint file.
pub struct Checkpoint {
    path: PathBuf,
    bytes: Vec<u8>,
    entries: BTreeMap<String, Entry>,
    meta: Meta,
}

impl std::fmt::Debug for Checkpoint {
    // Names and metadata, not the megabytes of data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tensors", &self.names())
            .field("meta", &self.meta)
            .finish()
    }
}

struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range in the file.
    range: (usize, usize),
}

impl Checkpoint {
    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The stored shape of a tensor.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// An f32 tensor's data, checked to have exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(self.data(
            name,
            DType::F32,
            shape,
        )?))
    }

    /// A u32 tensor's data, checked to have exactly `shape`.
    pub fn tensor_u32(&self, name: &str, shape: &[usize]) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(self.data(
            name,
            DType::U32,
            shape,
        )?))
    }

    /// Overwrites each target tensor in place with the stored tensor of the same name, after
    /// checking everything first (a refusal changes nothing): every target is in the file with
    /// its dtype and shape, every stored tensor is a target, and every f32 value is finite. The
    /// uploads are recorded in the pending encoder, ordered with the kernels around them.
    pub fn restore<S: AsRef<str>>(&self, targets: &[(S, &Tensor)]) -> Result<()> {
        self.restore_ignoring(targets, &[])
    }

    /// [`Checkpoint::restore`], where stored tensors whose names start with one of `ignored`
    /// may be left unread (a model loaded from a trainer's checkpoint skips the optimizer's
    /// [`OPTIMIZER_PREFIX`]).
    pub fn restore_ignoring<S: AsRef<str>>(
        &self,
        targets: &[(S, &Tensor)],
        ignored: &[&str],
    ) -> Result<()> {
        let data = targets
            .iter()
            .map(|(name, t)| self.data(name.as_ref(), t.dtype(), t.shape()))
            .collect::<Result<Vec<_>>>()?;
        for (name, e) in &self.entries {
            let wanted = targets.iter().any(|(n, _)| n.as_ref() == name);
            if !wanted && !ignored.iter().any(|p| name.starts_with(p)) {
                return Err(self.error(CheckpointProblem::UnexpectedTensor {
                    name: name.clone(),
                    shape: e.shape.clone(),
                }));
            }
        }
        for ((name, t), bytes) in targets.iter().zip(&data) {
            if t.dtype() == DType::F32 {
                let values: Vec<f32> = bytemuck::pod_collect_to_vec(bytes);
                if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                    return Err(self.error(CheckpointProblem::NonFiniteTensor {
                        name: name.as_ref().to_string(),
                        index,
                        value: values[index],
                    }));
                }
            }
        }
        for ((_, t), bytes) in targets.iter().zip(data) {
            match t.dtype() {
                DType::F32 => {
                    t.write_from_slice(&bytemuck::pod_collect_to_vec::<u8, f32>(bytes))?
                }
                DType::U32 => {
                    t.write_from_slice(&bytemuck::pod_collect_to_vec::<u8, u32>(bytes))?
                }
            }
        }
        Ok(())
    }

    /// Fails naming the first key of `want` whose saved value differs (or is missing).
    pub fn expect_meta(&self, want: &[(String, String)]) -> Result<()> {
        for (key, wanted) in want {
            let saved = self.meta(key)?;
            if saved != wanted {
                return Err(self.error(CheckpointProblem::MetaMismatch {
                    key: key.clone(),
                    saved: saved.to_string(),
                    wanted: wanted.clone(),
                }));
            }
        }
        Ok(())
    }

    /// All metadata.
    pub fn metadata(&self) -> &Meta {
        &self.meta
    }

    /// One metadata value.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.error(CheckpointProblem::MissingMeta { key: key.into() }))
    }

    /// One metadata value parsed (`let step: u64 = ckpt.meta_parse("step")?`).
    pub fn meta_parse<T: FromStr>(&self, key: &str) -> Result<T> {
        let value = self.meta(key)?;
        value.parse().map_err(|_| {
            self.error(CheckpointProblem::BadMeta {
                key: key.into(),
                value: value.into(),
                expected: std::any::type_name::<T>(),
            })
        })
    }

    /// The bytes of tensor `name`, checked against the expected dtype and shape.
    fn data(&self, name: &str, dtype: DType, shape: &[usize]) -> Result<&[u8]> {
        let entry = self.entries.get(name).ok_or_else(|| {
            self.error(CheckpointProblem::MissingTensor {
                name: name.into(),
                available: self.entries.keys().cloned().collect(),
            })
        })?;
        let stored = match entry.dtype {
            Dtype::F32 => Some(DType::F32),
            Dtype::U32 => Some(DType::U32),
            _ => None,
        };
        if stored != Some(dtype) {
            return Err(self.error(CheckpointProblem::WrongDType {
                name: name.into(),
                expected: dtype.name(),
                found: format!("{:?}", entry.dtype).to_lowercase(),
            }));
        }
        if entry.shape != shape {
            return Err(self.error(CheckpointProblem::WrongShape {
                name: name.into(),
                expected: shape.to_vec(),
                found: entry.shape.clone(),
            }));
        }
        Ok(&self.bytes[entry.range.0..entry.range.1])
    }

    fn error(&self, problem: CheckpointProblem) -> Error {
        Error::Checkpoint {
            path: self.path.clone(),
            problem,
        }
    }
}

/// A tensor's bytes on the host, as safetensors wants them.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}
