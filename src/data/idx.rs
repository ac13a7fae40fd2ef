//! IDX files (the MNIST format): u8 images `[n, rows, cols]` and labels `[n]`, raw or gzipped.
//! Tested by `tests/data.rs` (bad magic, truncation, trailing bytes, corrupt gzip).

use crate::{DataProblem, Error, Result};
use std::io::Read;
use std::path::Path;

/// Magic number of an IDX file of u8 with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The contents of an IDX image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    /// Row-major [n, rows, cols].
    pub pixels: Vec<u8>,
}

/// Reads an IDX image file (magic 0x00000803), gzipped or raw.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC)?;
    Ok(IdxImages {
        n: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads an IDX label file (magic 0x00000801), gzipped or raw.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    Ok(read_idx(path, LABELS_MAGIC)?.1)
}

/// Reads the whole file, inflating it when it starts with the gzip magic, and checks the
/// header against `magic` and the data length against the dimensions.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |problem| Error::Data {
        path: path.to_path_buf(),
        problem,
    };
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        // GzDecoder checks the trailer's CRC-32 and length and reports a cut stream as an
        // unexpected end of file, so every corruption surfaces here.
        let mut out = Vec::with_capacity(raw.len() * 2);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(DataProblem::Gzip(e.to_string())))?;
        out
    } else {
        raw
    };

    // Header: a big-endian u32 magic (0, 0, type 0x08 = u8, number of dimensions), then one
    // big-endian u32 per dimension.
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if bytes.len() < 4 {
        return Err(bad(DataProblem::Truncated {
            expected: header as u64,
            found: bytes.len() as u64,
        }));
    }
    if word(0) != magic {
        return Err(bad(DataProblem::BadMagic {
            expected: magic,
            found: word(0),
        }));
    }
    if bytes.len() < header {
        return Err(bad(DataProblem::Truncated {
            expected: header as u64,
            found: bytes.len() as u64,
        }));
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
    // u128: three u32 dimensions cannot overflow it.
    let expected = header as u128 + dims.iter().map(|&d| d as u128).product::<u128>();
    let found = bytes.len() as u128;
    if found < expected {
        return Err(bad(DataProblem::Truncated {
            expected: expected.min(u64::MAX as u128) as u64,
            found: found as u64,
        }));
    }
    if found > expected {
        return Err(bad(DataProblem::TrailingData {
            expected: expected as u64,
            extra: (found - expected) as u64,
        }));
    }
    bytes.drain(..header);
    Ok((dims, bytes))
}
