//! IDX files (the MNIST format): u8 images `[n, rows, cols]` and labels `[n]`, raw or gzipped,
//! read as a stream: the header first, then at most the bytes it promises. Tested by
//! `tests/data.rs` (bad magic, truncation, trailing bytes, corrupt gzip, a gzip bomb).

use crate::{DataProblem, Error, Result};
use std::io::{BufRead, BufReader, Read};
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
    /// Row-major `[n, rows, cols]`.
    pub pixels: Vec<u8>,
}

/// One IDX file as read: its dimensions and data, and what identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    /// The data after the header, row-major.
    pub data: Vec<u8>,
    /// The header as inflated: magic and dimensions, big-endian.
    pub header: Vec<u8>,
    /// Size of the file on disk (gzipped or raw), bytes.
    pub file_size: u64,
    /// CRC-32 of the inflated data after the header.
    pub data_crc: u32,
}

/// Reads an IDX image file (magic 0x00000803), gzipped or raw.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let idx = read(path, IMAGES_MAGIC)?;
    Ok(IdxImages {
        n: idx.dims[0],
        rows: idx.dims[1],
        cols: idx.dims[2],
        pixels: idx.data,
    })
}

/// Reads an IDX label file (magic 0x00000801), gzipped or raw.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    Ok(read(path, LABELS_MAGIC)?.data)
}

/// Reads an IDX file of u8 whose header must start with `magic`, inflating it on the fly when
/// it starts with the gzip magic. The header is read first, so a wrong magic is reported after
/// 4 bytes, and no more than the bytes the dimensions promise are inflated: a stream that holds
/// more is [`DataProblem::Oversized`] once one byte past them has been read (a gzip bomb costs
/// no more memory than honest data of its header's size).
pub fn read(path: &Path, magic: u32) -> Result<Idx> {
    let bad = |problem| Error::Data {
        path: path.to_path_buf(),
        problem,
    };
    let io = |source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let file_size = file.metadata().map_err(io)?.len();
    let mut file = BufReader::new(file);
    let gzipped = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    // GzDecoder checks the trailer's CRC-32 and length when it reaches the end and reports a
    // cut stream as an unexpected end of file, so every corruption surfaces as an error here.
    let mut reader: Box<dyn Read> = match gzipped {
        true => Box::new(flate2::read::GzDecoder::new(file)),
        false => Box::new(file),
    };
    // Reads up to `limit` bytes into `out`, fewer only at the end of the stream.
    let mut fill = |out: &mut Vec<u8>, limit: u64| -> Result<()> {
        match (&mut reader).take(limit).read_to_end(out) {
            Ok(_) => Ok(()),
            Err(e) if gzipped => Err(bad(DataProblem::Gzip(e.to_string()))),
            Err(e) => Err(io(e)),
        }
    };

    // Header: a big-endian u32 magic (0, 0, type 0x08 = u8, number of dimensions), then one
    // big-endian u32 per dimension.
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let mut header = Vec::with_capacity(header_len);
    fill(&mut header, 4)?;
    let word = |b: &[u8], i: usize| u32::from_be_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
    let truncated = |found: usize| {
        bad(DataProblem::Truncated {
            expected: header_len as u64,
            found: found as u64,
        })
    };
    if header.len() < 4 {
        return Err(truncated(header.len()));
    }
    if word(&header, 0) != magic {
        return Err(bad(DataProblem::BadMagic {
            expected: magic,
            found: word(&header, 0),
        }));
    }
    fill(&mut header, 4 * ndims as u64)?;
    if header.len() < header_len {
        return Err(truncated(header.len()));
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(&header, i) as usize).collect();
    // u128: three u32 dimensions cannot overflow it.
    let expected = dims.iter().map(|&d| d as u128).product::<u128>();
    let total = |n: u128| (header_len as u128 + n).min(u64::MAX as u128) as u64;
    if !gzipped && file_size as u128 != header_len as u128 + expected {
        // A raw file's length is known before reading it.
        let found = file_size as u128 - header_len as u128;
        return Err(bad(if found < expected {
            DataProblem::Truncated {
                expected: total(expected),
                found: file_size,
            }
        } else {
            DataProblem::TrailingData {
                expected: total(expected),
                extra: (found - expected) as u64,
            }
        }));
    }
    let expected = u64::try_from(expected).map_err(|_| {
        bad(DataProblem::Truncated {
            expected: u64::MAX,
            found: file_size,
        })
    })?;
    // Capacity grows with what arrives, never to a size the header merely claims.
    let mut data = Vec::with_capacity(expected.min(file_size.saturating_mul(4)) as usize);
    fill(&mut data, expected + 1)?;
    if (data.len() as u64) < expected {
        return Err(bad(DataProblem::Truncated {
            expected: total(expected as u128),
            found: total(data.len() as u128),
        }));
    }
    if data.len() as u64 > expected {
        return Err(bad(DataProblem::Oversized {
            expected: total(expected as u128),
        }));
    }
    let data_crc = crc32fast::hash(&data);
    Ok(Idx {
        dims,
        data,
        header,
        file_size,
        data_crc,
    })
}
