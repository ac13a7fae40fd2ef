//! Launchers for `shaders/layout.wgsl`: transpose, concat, slice, block copy, row gather and
//! the channel permutes of images; bit copies for f32 and u32 alike. CPU twin and tests: `kernels-tests/layout.rs`.

use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};
use std::ops::Range;

pub const SHADER: Shader = shader!("layout", "layout.wgsl");

/// Lanes per workgroup of `copy_blocks` and `gather_rows`, and the row tiles each one takes;
/// transpose tiles are T × T.
const WG: usize = 256;
const STEPS: u32 = 4;
const T: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    tiles_c: u32,
    tiles: u32,
    src_stride: u32,
    src_offset: u32,
    dst_stride: u32,
    dst_offset: u32,
    table_rows: u32,
    _pad: [u32; 3],
}

/// `[..., R, C] -> [..., C, R]`, batched over the leading axes; any dtype.
pub fn transpose(x: &Tensor) -> Result<Tensor> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(Error::bad(
            "transpose",
            format!("shape {s:?} has no two axes to swap"),
        ));
    }
    let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
    let mut shape = s.to_vec();
    shape.swap(s.len() - 2, s.len() - 1);
    let out = Tensor::uninit(x.engine(), &shape, x.dtype())?;
    if r == 1 || c == 1 {
        // A single row or column has the same memory order either way: no kernel needed.
        x.engine().copy(x, &out)?;
        return Ok(out);
    }
    let tiles_c = c.div_ceil(T);
    let tiles = x.numel() / (r * c) * r.div_ceil(T) * tiles_c;
    let p = Params {
        rows: r as u32,
        cols: c as u32,
        tiles_c: tiles_c as u32,
        tiles: tiles as u32,
        ..Params::default()
    };
    let tensors = [
        Bind::read("src", x).words(),
        Bind::write("dst", &out).words(),
    ];
    super::launch(&SHADER, "transpose", &[], &tensors, &p, p.tiles)?;
    Ok(out)
}

/// Copies `src[.., src_start..src_start+len, ..]` into `dst[.., dst_start..dst_start+len, ..]`
/// along `axis`; the other axes must agree. Concat and slice are built on it (and so is the
/// backward of slice: copy the gradient into a zeroed tensor).
pub fn copy_along(
    src: &Tensor,
    dst: &Tensor,
    axis: usize,
    src_start: usize,
    dst_start: usize,
    len: usize,
) -> Result<()> {
    src.expect_dtype("copy_along", dst.dtype())?;
    check_axis("copy_along", dst.shape(), axis)?;
    agree_except("copy_along", src.shape(), dst.shape(), axis)?;
    let (sd, dd) = (src.shape()[axis], dst.shape()[axis]);
    if len == 0 || src_start + len > sd || dst_start + len > dd {
        return Err(Error::bad(
            "copy_along",
            format!(
                "{len} rows from {src_start} of {sd} into {dst_start} of {dd} along axis {axis}"
            ),
        ));
    }
    let outer: usize = dst.shape()[..axis].iter().product();
    let inner: usize = dst.shape()[axis + 1..].iter().product();
    let p = Params {
        src_stride: (sd * inner) as u32,
        src_offset: (src_start * inner) as u32,
        dst_stride: (dd * inner) as u32,
        dst_offset: (dst_start * inner) as u32,
        ..row_params(outer, len * inner)
    };
    let tensors = [
        Bind::read("src", src).words(),
        Bind::write("dst", dst).words(),
    ];
    launch_rows("copy_blocks", &tensors, p)
}

/// Joins `parts` along `axis`; all other axes and the dtype must agree.
pub fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor> {
    let Some(first) = parts.first() else {
        return Err(Error::bad("concat", "no tensors to join"));
    };
    check_axis("concat", first.shape(), axis)?;
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for t in parts {
        t.expect_dtype("concat", first.dtype())?;
        agree_except("concat", t.shape(), first.shape(), axis)?;
        shape[axis] += t.shape()[axis];
    }
    let out = Tensor::uninit(first.engine(), &shape, first.dtype())?;
    let mut at = 0;
    for t in parts {
        copy_along(t, &out, axis, 0, at, t.shape()[axis])?;
        at += t.shape()[axis];
    }
    Ok(out)
}

/// `x[.., range, ..]` along `axis`, as a new tensor; needs `start < end ≤ x.shape()[axis]`.
pub fn slice(x: &Tensor, axis: usize, range: Range<usize>) -> Result<Tensor> {
    check_axis("slice", x.shape(), axis)?;
    let dim = x.shape()[axis];
    if range.start >= range.end || range.end > dim {
        return Err(Error::bad(
            "slice",
            format!("range {range:?} of an axis of {dim}"),
        ));
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = range.len();
    let out = Tensor::uninit(x.engine(), &shape, x.dtype())?;
    copy_along(x, &out, axis, range.start, 0, range.len())?;
    Ok(out)
}

/// `table: [N, D]`, `indices: u32 [S...]` -> `[S..., D]` with row `s` = `table[indices[s]]`.
/// An index ≥ N yields a row of zeros (bit pattern 0): it cannot be caught on the host without
/// a readback, and a zero row is easier to spot than a silently clamped one.
pub fn gather(table: &Tensor, indices: &Tensor) -> Result<Tensor> {
    indices.expect_dtype("gather", DType::U32)?;
    let &[n, d] = table.shape() else {
        let s = table.shape();
        return Err(Error::bad(
            "gather",
            format!("table of shape {s:?} is not [N, D]"),
        ));
    };
    let mut shape = indices.shape().to_vec();
    shape.push(d);
    let out = Tensor::uninit(table.engine(), &shape, table.dtype())?;
    let p = Params {
        table_rows: n as u32,
        ..row_params(indices.numel(), d)
    };
    let tensors = [
        Bind::read("src", table).words(),
        Bind::read("indices", indices),
        Bind::write("dst", &out).words(),
    ];
    launch_rows("gather_rows", &tensors, p)?;
    Ok(out)
}

/// x `[B, C, H, W]` -> `[B·H·W, C]`: channels last, one row per pixel (the row layout of the
/// convolutions' GEMMs, and of vectors to quantise or classify per pixel); any dtype.
pub fn to_channels_last(x: &Tensor) -> Result<Tensor> {
    let &[b, c, h, w] = x.shape() else {
        let why = format!("expected [B, C, H, W], got {:?}", x.shape());
        return Err(Error::bad("to_channels_last", why));
    };
    permute(x, [b, c, h * w], true)
}

/// rows `[B·H·W, C]` -> `shape` = `[B, C, H, W]`: the inverse of [`to_channels_last`].
pub fn to_channels_first(rows: &Tensor, shape: [usize; 4]) -> Result<Tensor> {
    let [b, c, h, w] = shape;
    rows.expect_shape("to_channels_first", &[b * h * w, c])?;
    permute(rows, [b, c, h * w], false)?.reshape(&shape)
}

/// Channels-first `[B, C, P]` <-> channels-last `[B·P, C]` (`to_rows` picks the direction); the
/// result is `[B·P, C]` or `[B, C, P]`. One invocation per pixel.
pub(crate) fn permute(t: &Tensor, [b, c, pixels]: [usize; 3], to_rows: bool) -> Result<Tensor> {
    const PIXELS_PER_WORKGROUP: usize = 64;
    let shape = match to_rows {
        true => vec![b * pixels, c],
        false => vec![b, c, pixels],
    };
    let op = "channel permute";
    if t.numel() != b * c * pixels {
        return Err(Error::ShapeMismatch {
            op,
            lhs: t.shape().to_vec(),
            rhs: shape,
        });
    }
    if u32::try_from(t.numel()).is_err() {
        return Err(Error::bad(
            op,
            "more than 2^32 - 1 elements (indices are u32)",
        ));
    }
    let out = Tensor::uninit(t.engine(), &shape, t.dtype())?;
    let (entry, src, dst) = match (to_rows, c.is_multiple_of(4)) {
        (true, false) => ("channels_last", "src", "dst"),
        (true, true) => ("channels_last4", "src", "dst4"),
        (false, false) => ("channels_first", "src", "dst"),
        (false, true) => ("channels_first4", "src4", "dst"),
    };
    let p = Params {
        rows: (b * pixels) as u32,
        cols: c as u32,
        src_stride: pixels as u32,
        ..Params::default()
    };
    let tensors = [Bind::read(src, t).words(), Bind::write(dst, &out).words()];
    let groups = (b * pixels).div_ceil(PIXELS_PER_WORKGROUP) as u32;
    super::launch(&SHADER, entry, &[], &tensors, &p, groups)?;
    Ok(out)
}

/// Params for a `rows × cols` launch of row tiles with `lanes(cols)` lanes along a row.
fn row_params(rows: usize, cols: usize) -> Params {
    let lanes = lanes(cols);
    let tiles_c = cols.div_ceil(lanes);
    Params {
        rows: rows as u32,
        cols: cols as u32,
        tiles_c: tiles_c as u32,
        tiles: (rows.div_ceil(WG / lanes) * tiles_c) as u32,
        ..Params::default()
    }
}

/// Lanes along a row: the row length rounded up to a power of two, at most a workgroup.
fn lanes(cols: usize) -> usize {
    cols.next_power_of_two().min(WG)
}

/// Launches `copy_blocks` or `gather_rows`: STEPS row tiles per workgroup.
fn launch_rows(entry: &'static str, tensors: &[Bind], p: Params) -> Result<()> {
    let constants = [("COLS", lanes(p.cols as usize) as f64)];
    super::launch(
        &SHADER,
        entry,
        &constants,
        tensors,
        &p,
        p.tiles.div_ceil(STEPS),
    )
}

fn check_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<()> {
    if axis >= shape.len() {
        return Err(Error::bad(op, format!("axis {axis} of shape {shape:?}")));
    }
    Ok(())
}

/// Errors unless `a` and `b` have the same rank and agree on every axis but `axis`.
fn agree_except(op: &'static str, a: &[usize], b: &[usize], axis: usize) -> Result<()> {
    let agree = a.len() == b.len()
        && a.iter()
            .zip(b)
            .enumerate()
            .all(|(i, (x, y))| i == axis || x == y);
    if !agree {
        return Err(Error::ShapeMismatch {
            op,
            lhs: a.to_vec(),
            rhs: b.to_vec(),
        });
    }
    Ok(())
}
