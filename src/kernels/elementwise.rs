//! Launchers for `shaders/elementwise.wgsl`: unary maps, broadcasting binary ops, affine,
//! clamp, fill. CPU twin and tests: `kernels-tests/elementwise.rs`.

use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

pub const SHADER: Shader = shader!("elementwise", "elementwise.wgsl");

const WG: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    cols: u32,
    mode_x: u32,
    mode_y: u32,
    a: f32,
    b: f32,
    _pad: [u32; 2],
}

/// Unary maps; the discriminant is the shader's `OP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    Neg,
    Exp,
    Log,
    Sqrt,
    Relu,
    Sigmoid,
    Tanh,
    Softplus,
    Square,
    /// max(x, 0) + [`LEAK`]·min(x, 0).
    LeakyRelu,
}

/// The negative-side slope of [`Unary::LeakyRelu`] (PyTorch's default), as in the shader.
pub const LEAK: f32 = 0.01;

impl Unary {
    pub const ALL: [Unary; 10] = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Sqrt,
        Unary::Relu,
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Softplus,
        Unary::Square,
        Unary::LeakyRelu,
    ];
}

/// Binary ops; the discriminant is the shader's `OP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// `a` where `b > 0`, else 0: ReLU's backward with `b` the ReLU's output.
    MaskPositive,
    /// `a` where `b > 0`, else [`LEAK`]·a: the leaky ReLU's backward with `b` its output.
    MaskLeaky,
}

impl Binary {
    pub const ALL: [Binary; 8] = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Max,
        Binary::Min,
        Binary::MaskPositive,
        Binary::MaskLeaky,
    ];
}

/// How an operand of a binary op is broadcast against the output viewed as `[rows, cols]`
/// (`cols` = last axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broadcast {
    Full = 0,
    /// Shape `[cols]` (or `[1, …, 1, cols]`): the same row for every row.
    Row = 1,
    /// Shape `[rows, 1]`: one value per row (NumPy rules: a bare `[rows]` is a row vector).
    Column = 2,
    /// One element.
    Scalar = 3,
}

/// How `operand` broadcasts against an output of shape `out`, if it can.
pub fn broadcast_of(operand: &[usize], out: &[usize]) -> Option<Broadcast> {
    let cols = *out.last()?;
    let m: usize = operand.iter().product();
    let trimmed: Vec<usize> = operand.iter().copied().skip_while(|&d| d == 1).collect();
    if operand == out {
        Some(Broadcast::Full)
    } else if m == 1 {
        Some(Broadcast::Scalar)
    } else if trimmed == [cols] {
        Some(Broadcast::Row)
    } else if trimmed.len() >= 2
        && trimmed.last() == Some(&1)
        && trimmed[..trimmed.len() - 1]
            .iter()
            .eq(out[..out.len() - 1].iter().skip_while(|&&d| d == 1))
    {
        Some(Broadcast::Column)
    } else {
        None
    }
}

fn launch(
    entry: &'static str,
    op: u32,
    inputs: &[&Tensor],
    out: &Tensor,
    params: Params,
) -> Result<()> {
    for t in inputs.iter().chain([&out]) {
        t.expect_dtype(entry, DType::F32)?;
    }
    let (entry, params) = vectorized(entry, params, inputs.len());
    // The vec4 entry points read and write through the `…4` views.
    let [x, y, o] = if entry.ends_with('4') {
        ["x4", "y4", "out4"]
    } else {
        ["x", "y", "out"]
    };
    let mut tensors: Vec<Bind> = inputs
        .iter()
        .zip([x, y])
        .map(|(t, n)| Bind::read(n, t))
        .collect();
    tensors.push(Bind::write(o, out));
    let workgroups = (params.n as usize).div_ceil(WG) as u32;
    super::launch(
        &SHADER,
        entry,
        &[("OP", op as f64)],
        &tensors,
        &params,
        workgroups,
    )
}

/// The vec4 twin of `entry` with its params counted in vec4s, when every operand allows it
/// (n % 4 == 0; each input full, or a row vector with cols % 4 == 0); else `entry` as is.
fn vectorized(entry: &'static str, p: Params, inputs: usize) -> (&'static str, Params) {
    let wide = match entry {
        "unary" => "unary4",
        "binary" => "binary4",
        "affine" => "affine4",
        "accumulate" => "accumulate4",
        _ => return (entry, p),
    };
    let fits = |mode: u32| {
        mode == Broadcast::Full as u32
            || (mode == Broadcast::Row as u32 && p.cols.is_multiple_of(4))
    };
    let modes = [p.mode_x, p.mode_y];
    if !p.n.is_multiple_of(4) || !modes[..inputs].iter().all(|&m| fits(m)) {
        return (entry, p);
    }
    let p4 = Params {
        n: p.n / 4,
        cols: p.cols / 4,
        ..p
    };
    (wide, p4)
}

fn params(out: &Tensor) -> Params {
    Params {
        n: out.numel() as u32,
        cols: *out.shape().last().unwrap() as u32,
        mode_x: 0,
        mode_y: 0,
        a: 0.0,
        b: 0.0,
        _pad: [0; 2],
    }
}

fn same_shape(op: &'static str, x: &Tensor, out: &Tensor) -> Result<()> {
    out.expect_shape(op, x.shape())
}

/// `out = op(x)` elementwise.
pub fn unary_into(op: Unary, x: &Tensor, out: &Tensor) -> Result<()> {
    same_shape("unary", x, out)?;
    launch("unary", op as u32, &[x], out, params(out))
}

/// `op(x)` elementwise.
pub fn unary(op: Unary, x: &Tensor) -> Result<Tensor> {
    let out = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
    unary_into(op, x, &out)?;
    Ok(out)
}

/// The output shape of `op(a, b)`: the larger operand's shape; the other must broadcast.
pub fn broadcast_shape(a: &Tensor, b: &Tensor) -> Result<Vec<usize>> {
    let out = if b.numel() > a.numel() {
        b.shape()
    } else {
        a.shape()
    };
    for t in [a, b] {
        if broadcast_of(t.shape(), out).is_none() {
            return Err(Error::ShapeMismatch {
                op: "binary",
                lhs: a.shape().to_vec(),
                rhs: b.shape().to_vec(),
            });
        }
    }
    Ok(out.to_vec())
}

/// `out = op(a, b)` with `a` and `b` broadcast to `out`'s shape (full, row, column, scalar).
pub fn binary_into(op: Binary, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let mismatch = || Error::ShapeMismatch {
        op: "binary",
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
    };
    let mode_x = broadcast_of(a.shape(), out.shape()).ok_or_else(mismatch)?;
    let mode_y = broadcast_of(b.shape(), out.shape()).ok_or_else(mismatch)?;
    let p = Params {
        mode_x: mode_x as u32,
        mode_y: mode_y as u32,
        ..params(out)
    };
    launch("binary", op as u32, &[a, b], out, p)
}

/// `op(a, b)` with broadcasting (see [`binary_into`]).
pub fn binary(op: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = broadcast_shape(a, b)?;
    let out = Tensor::uninit(a.engine(), &shape, DType::F32)?;
    binary_into(op, a, b, &out)?;
    Ok(out)
}

/// How `x` broadcasts to `out`, or a shape mismatch naming both.
fn broadcast_to(op: &'static str, x: &Tensor, out: &Tensor) -> Result<Broadcast> {
    broadcast_of(x.shape(), out.shape()).ok_or_else(|| Error::ShapeMismatch {
        op,
        lhs: x.shape().to_vec(),
        rhs: out.shape().to_vec(),
    })
}

/// `out = scale·x + shift`, with `x` broadcast to `out` (row, column or scalar).
pub fn affine_into(x: &Tensor, scale: f32, shift: f32, out: &Tensor) -> Result<()> {
    let mode_x = broadcast_to("affine", x, out)?;
    let p = Params {
        a: scale,
        b: shift,
        mode_x: mode_x as u32,
        ..params(out)
    };
    launch("affine", 0, &[x], out, p)
}

/// `scale·x + shift`.
pub fn affine(x: &Tensor, scale: f32, shift: f32) -> Result<Tensor> {
    let out = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
    affine_into(x, scale, shift, &out)?;
    Ok(out)
}

/// `out += scale·x` in place, with `x` broadcast to `out` (gradient accumulation).
pub fn accumulate(out: &Tensor, x: &Tensor, scale: f32) -> Result<()> {
    let mode_x = broadcast_to("accumulate", x, out)?;
    let p = Params {
        a: scale,
        mode_x: mode_x as u32,
        ..params(out)
    };
    launch("accumulate", 0, &[x], out, p)
}

/// `min(max(x, lo), hi)`.
pub fn clamp(x: &Tensor, lo: f32, hi: f32) -> Result<Tensor> {
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(Error::bad("clamp", format!("empty range [{lo}, {hi}]")));
    }
    let out = Tensor::uninit(x.engine(), x.shape(), DType::F32)?;
    let p = Params {
        a: lo,
        b: hi,
        ..params(&out)
    };
    launch("clamp_range", 0, &[x], &out, p)?;
    Ok(out)
}

/// Sets every element of `out` to `value`.
pub fn fill(out: &Tensor, value: f32) -> Result<()> {
    let p = Params {
        a: value,
        ..params(out)
    };
    launch("fill", 0, &[], out, p)
}
