//! Launcher for `shaders/matmul.wgsl`: C = op(A)·op(B) (+ bias row, ReLU, += C) for any M, N, K;
//! uses the subgroup kernels (`matmul_subgroup`) when the device has them. Tests: `kernels-tests/matmul.rs`.

use super::matmul_subgroup;
use crate::engine::{DType, Error, Result, Shader, Tensor};

pub const SHADER: Shader = Shader {
    name: "matmul",
    source: include_str!("../../shaders/matmul.wgsl"),
};

/// Output tile of one workgroup (rows × columns), fixed by the shader.
const TILE_M: usize = 8;
const TILE_N: usize = 32;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
    tiles: u32,
    _pad: [u32; 3],
}

/// Options of a product; `Default` is the plain C = A·B.
#[derive(Clone, Copy, Debug, Default)]
pub struct Matmul<'a> {
    /// A is stored [K, M] and used transposed.
    pub trans_a: bool,
    /// B is stored [N, K] and used transposed.
    pub trans_b: bool,
    /// A row vector [N] added to every row.
    pub bias: Option<&'a Tensor>,
    /// ReLU after the bias.
    pub relu: bool,
    /// `matmul_into` adds the (biased, ReLU'd) product to the output instead of overwriting it.
    pub accumulate: bool,
}

/// (M, K, N) of op(A)·op(B), checking ranks, dtypes and the inner dimension.
fn dims(a: &Tensor, b: &Tensor, o: &Matmul) -> Result<(usize, usize, usize)> {
    for t in [a, b] {
        t.expect_dtype("matmul", DType::F32)?;
        if t.shape().len() != 2 {
            return Err(Error::bad(
                "matmul",
                format!("operands must be 2-D, got {:?}", t.shape()),
            ));
        }
    }
    let (sa, sb) = (a.shape(), b.shape());
    let (m, ka) = if o.trans_a {
        (sa[1], sa[0])
    } else {
        (sa[0], sa[1])
    };
    let (kb, n) = if o.trans_b {
        (sb[1], sb[0])
    } else {
        (sb[0], sb[1])
    };
    if ka != kb {
        return Err(Error::ShapeMismatch {
            op: "matmul",
            lhs: sa.to_vec(),
            rhs: sb.to_vec(),
        });
    }
    if let Some(bias) = o.bias {
        bias.expect_dtype("matmul bias", DType::F32)?;
        if bias.numel() != n {
            return Err(Error::ShapeMismatch {
                op: "matmul bias",
                lhs: bias.shape().to_vec(),
                rhs: vec![n],
            });
        }
    }
    Ok((m, ka, n))
}

/// `out = op(a)·op(b)` (+ bias, ReLU), or `out +=` that when `opts.accumulate`.
pub fn matmul_into(a: &Tensor, b: &Tensor, opts: &Matmul, out: &Tensor) -> Result<()> {
    let (m, k, n) = dims(a, b, opts)?;
    out.expect_dtype("matmul", DType::F32)?;
    out.expect_shape("matmul output", &[m, n])?;
    let tiles_n = n.div_ceil(TILE_N);
    let tiles = m.div_ceil(TILE_M) * tiles_n;
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        tiles_n: tiles_n as u32,
        tiles: tiles as u32,
        _pad: [0; 3],
    };
    let (shader, entry) = if matmul_subgroup::usable(out.engine()) {
        (&matmul_subgroup::SHADER, matmul_subgroup::entry(m, k, n))
    } else {
        (&SHADER, "matmul")
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let constants = [
        ("TRANS_A", flag(opts.trans_a)),
        ("TRANS_B", flag(opts.trans_b)),
        ("HAS_BIAS", flag(opts.bias.is_some())),
        ("RELU", flag(opts.relu)),
        ("ACCUMULATE", flag(opts.accumulate)),
    ];
    // Without a bias the shader never reads binding 2, but the layout has it: bind A there.
    let bias = opts.bias.unwrap_or(a);
    super::launch(
        shader,
        entry,
        &constants,
        &[a, b, bias, out],
        &params,
        tiles as u32,
    )
}

/// `op(a)·op(b)` (+ bias, ReLU) as a new [M, N] tensor.
pub fn matmul_with(a: &Tensor, b: &Tensor, opts: &Matmul) -> Result<Tensor> {
    let (m, _, n) = dims(a, b, opts)?;
    let out = Tensor::uninit(a.engine(), &[m, n], DType::F32)?;
    let opts = Matmul {
        accumulate: false,
        ..*opts
    };
    matmul_into(a, b, &opts, &out)?;
    Ok(out)
}

/// `a·b` for 2-D tensors.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_with(a, b, &Matmul::default())
}
