//! Launcher for `shaders/matmul.wgsl`: C = op(A)·op(B) (+ bias row, ReLU, += C) for any M, N, K;
//! picks the wide-load or subgroup kernels when the device and shape allow. Tests: `kernels-tests/matmul.rs`.

use super::{matmul_subgroup, matmul_wide};
use crate::engine::{Bind, DType, Error, Result, Shader, Tensor, shader};

/// Without and with a bias row (`shaders/bias/{no_bias,bias}.wgsl` in front).
pub const SHADERS: [Shader; 2] = [
    shader!("matmul", "bias/no_bias.wgsl", "matmul.wgsl"),
    shader!("matmul_bias", "bias/bias.wgsl", "matmul.wgsl"),
];

/// Output tile of one workgroup (rows × columns) of the portable and subgroup kernels.
const TILE_M: usize = 8;
const TILE_N: usize = 32;

/// Which kernel family computes a product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernel {
    /// The fastest one the device and shape allow: wide, then subgroup, then portable.
    #[default]
    Auto,
    /// `matmul.wgsl`: no optional features, any shape.
    Portable,
    /// `matmul_subgroup.wgsl`: subgroups of at least 8, any shape.
    Subgroup,
    /// `matmul_wide.wgsl`: subgroups and 64-bit integers; see [`matmul_wide::plan`] for shapes.
    Wide,
}

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
    /// A row vector `[N]` added to every row.
    pub bias: Option<&'a Tensor>,
    /// ReLU after the bias.
    pub relu: bool,
    /// `matmul_into` adds the (biased, ReLU'd) product to the output instead of overwriting it.
    pub accumulate: bool,
    /// Kernel family; `Auto` unless a test or benchmark wants a particular one.
    pub kernel: Kernel,
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
    let engine = out.engine();
    let wide = matmul_wide::usable(engine)
        .then(|| matmul_wide::plan(m, k, n, opts.trans_a))
        .flatten();
    let with_bias = opts.bias.is_some() as usize;
    let subgroup = (
        &matmul_subgroup::SHADERS[with_bias],
        matmul_subgroup::entry(m, k, n),
        (TILE_M, TILE_N),
    );
    let (shader, entry, (tile_m, tile_n)) = match (opts.kernel, wide) {
        (Kernel::Auto | Kernel::Wide, Some((entry, tm, tn))) => {
            (&matmul_wide::SHADERS[with_bias], entry, (tm, tn))
        }
        (Kernel::Auto | Kernel::Subgroup, _) if matmul_subgroup::usable(engine) => subgroup,
        (Kernel::Auto | Kernel::Portable, _) => (&SHADERS[with_bias], "matmul", (TILE_M, TILE_N)),
        (kernel, _) => {
            return Err(Error::bad(
                "matmul",
                format!("the {kernel:?} kernel cannot run a {m}x{k}x{n} product on this device"),
            ));
        }
    };
    // lavapipe stops each invocation after 65,535 loop iterations: refuse instead of being wrong.
    let steps = match entry {
        e if e.starts_with("matmul_wide") => k / 8,
        "matmul_sg_v4" => k / 4,
        _ => k,
    };
    if let Some(limit) = engine.max_loop_iterations()
        && steps + 64 > limit as usize
    {
        let why =
            format!("K = {k} needs {steps} loop steps per invocation; this driver allows {limit}");
        return Err(Error::bad("matmul", why));
    }
    let tiles_n = n.div_ceil(tile_n);
    let tiles = m.div_ceil(tile_m) * tiles_n;
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        tiles_n: tiles_n as u32,
        tiles: tiles as u32,
        _pad: [0; 3],
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let constants = [
        ("TRANS_A", flag(opts.trans_a)),
        ("TRANS_B", flag(opts.trans_b)),
        ("RELU", flag(opts.relu)),
        ("ACCUMULATE", flag(opts.accumulate)),
    ];
    // The wide kernels view A, B and C in 8-float units (the short-M A^T kernel, A in 4).
    let [a_var, b_var, c_var] = if entry == "matmul_wide_ta_short" {
        ["a4", "b8", "c8"]
    } else if entry.starts_with("matmul_wide") {
        ["a8", "b8", "c8"]
    } else if entry == "matmul_sg_v4" {
        ["a4", "b4", "c"]
    } else {
        ["a", "b", "c"]
    };
    let mut tensors = vec![
        Bind::read(a_var, a),
        Bind::read(b_var, b),
        Bind::write(c_var, out),
    ];
    tensors.extend(opts.bias.map(|t| Bind::read("bias", t)));
    super::launch(shader, entry, &constants, &tensors, &params, tiles as u32)
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
