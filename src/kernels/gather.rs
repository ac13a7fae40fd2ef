//! Launcher for `shaders/gather.wgsl`: a batch of 8-bit images gathered from a data set on the
//! device by an index list, converted to f32 and optionally binarised, in one dispatch. CPU twin
//! and tests: `kernels-tests/gather.rs` (`cargo test --release --test kernels gather`).

use super::random::blocks;
use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("gather", "philox/philox.wgsl", "gather.wgsl");

/// Invocations per workgroup; each writes one Philox block of 4 values.
const WG: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    pixels: u32,
    start: u32,
    lead: u32,
    blocks: u32,
    key: [u32; 2],
    offset: [u32; 2],
    _pad: [u32; 3],
}

/// `bytes` packed 4 per u32 word, little-endian (byte `j` is bits `8·(j % 4)..` of word
/// `j / 4`), the last word padded with zeros: the layout [`gather`] reads.
pub fn pack(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| c.iter().rev().fold(0, |w, &b| (w << 8) | b as u32))
        .collect()
}

/// The grey levels of 8-bit images as `Split` holds them: `levels[v] = v as f32 / 255.0`, the
/// host's correctly rounded division (a multiply by 1/255 differs in the last bit).
pub fn unit_levels() -> Vec<f32> {
    (0..=255u8).map(|v| v as f32 / 255.0).collect()
}

/// Dynamic binarisation of a gathered batch by the convention of `random::bernoulli`: output
/// element `i` is 1 if `u < x` else 0, `u` value `first + i` of the Philox draw `(seed, offset)`
/// (a part of a batch draws what its elements draw in the whole one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binarize {
    pub seed: u64,
    pub offset: u64,
    pub first: usize,
}

/// Rows `order[start..start + rows]` of a data set of 8-bit images, as f32 `[rows, pixels]`:
/// `out[r, c] = levels[byte(order[start + r]·pixels + c)]`, then drawn as Bernoulli(`out`) when
/// `binarize` is given.
///
/// `images` is u32 `[⌈n·pixels / 4⌉]`, the data set's bytes as [`pack`] lays them out (image
/// `k`'s first byte is byte `k·pixels`); `order` is u32 `[m]` with every index read below `n`;
/// `levels` is f32 `[256]`, what each byte stands for (see [`unit_levels`]).
pub fn gather(
    images: &Tensor,
    levels: &Tensor,
    order: &Tensor,
    (start, rows): (usize, usize),
    pixels: usize,
    binarize: Option<Binarize>,
) -> Result<Tensor> {
    const OP: &str = "gather::gather";
    images.expect_dtype(OP, DType::U32)?;
    order.expect_dtype(OP, DType::U32)?;
    levels.expect_dtype(OP, DType::F32)?;
    levels.expect_shape(OP, &[256])?;
    let n = rows * pixels;
    // Byte and element indices are u32 in the shader.
    let fits = images.numel() as u64 * 4 <= u32::MAX as u64 + 1 && n <= u32::MAX as usize;
    if rows == 0 || pixels == 0 || start + rows > order.numel() || !fits {
        let why = format!(
            "rows {start}..{} of an order of {} indices, {pixels} pixels each, from {} words: \
             needs at least one row and pixel, rows inside the order and indices below 2^32",
            start + rows,
            order.numel(),
            images.numel()
        );
        return Err(Error::bad(OP, why));
    }
    let out = Tensor::uninit(images.engine(), &[rows, pixels], DType::F32)?;
    let (key, offset, lead) = match binarize {
        Some(b) => (
            b.seed,
            b.offset.wrapping_add((b.first / 4) as u64),
            b.first % 4,
        ),
        None => (0, 0, 0),
    };
    let wide = pixels.is_multiple_of(4) && lead == 0;
    let params = Params {
        n: n as u32,
        pixels: pixels as u32,
        start: start as u32,
        lead: lead as u32,
        blocks: blocks(lead + n) as u32,
        key: [key as u32, (key >> 32) as u32],
        offset: [offset as u32, (offset >> 32) as u32],
        _pad: [0; 3],
    };
    let (entry, out_var) = match wide {
        true => ("gather4", "out4"),
        false => ("gather1", "out"),
    };
    let tensors = [
        Bind::read("images", images),
        Bind::read("order", order),
        Bind::read("levels", levels),
        Bind::write(out_var, &out),
    ];
    let constants = [("BINARIZE", binarize.is_some() as u32 as f64)];
    let workgroups = params.blocks.div_ceil(WG as u32);
    super::launch(&SHADER, entry, &constants, &tensors, &params, workgroups)?;
    Ok(out)
}
