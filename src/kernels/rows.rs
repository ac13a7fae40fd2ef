//! Shared plumbing of the row kernel families `kl` and `losses`: their shader variants, shape
//! checks, the split of rows into pieces and the launch. Tests: `kernels-tests/{kl,losses}.rs`.

use super::reduce::{Reduce, reduce_last_into};
use crate::engine::{Bind, DType, Error, Result, Shader, Tensor};

/// A row family's shader, `[weight][lanes]`: the backward passes' row weight one `scale` for
/// all rows (`shaders/rows/weight_scalar.wgsl`, no weight buffer) or `g[row]·scale`
/// (`weight_row.wgsl`, binding `g`); the lane type `V = f32` (any row length) or `V = vec4<f32>`
/// (rows a multiple of 4 long); then `shaders/rows/rows.wgsl` and the family's kernels.
pub(crate) type Family = [[Shader; 2]; 2];

/// The [`Family`] of `shaders/<name>.wgsl`.
macro_rules! family {
    ($name:literal) => {
        [
            [
                $crate::kernels::rows::family!(@ $name, "", "f32", "scalar"),
                $crate::kernels::rows::family!(@ $name, "_v4", "vec4", "scalar"),
            ],
            [
                $crate::kernels::rows::family!(@ $name, "_g", "f32", "row"),
                $crate::kernels::rows::family!(@ $name, "_g_v4", "vec4", "row"),
            ],
        ]
    };
    (@ $name:literal, $suffix:literal, $lanes:literal, $weight:literal) => {
        $crate::engine::shader!(
            concat!($name, $suffix),
            concat!("rows/lanes_", $lanes, ".wgsl"),
            concat!("rows/weight_", $weight, ".wgsl"),
            "rows/rows.wgsl",
            concat!($name, ".wgsl")
        )
    };
}
pub(crate) use family;

const WG: usize = 64;
/// V units one invocation covers at most; longer rows are split into pieces (a forward's piece
/// sums are then added by reduce.wgsl). lavapipe ends an invocation after 65,535 loop iterations
/// in all, and cross entropy loops over its row three times: 3·4,096 stays far below. Backward
/// passes split no further: pieces of 16 or 49 V units (more invocations) measured no faster
/// than whole rows for BCE on [128, 784] (125–150 µs against 118–124 µs).
const SEGMENT: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    pieces: u32,
    piece: u32,
    classes: u32,
    _pad0: u32,
    scale: f32,
    _pad: u32,
}

/// The weight of each row's gradient in a backward pass.
#[derive(Clone, Copy, Debug)]
pub enum Weight<'a> {
    /// `g[row]`, f32 of shape `[B]`: typically ∂(caller's loss)/∂(row's value).
    PerRow(&'a Tensor),
    /// The same weight for every row.
    Scalar(f32),
}

/// One launch over the rows of `[B, D]` tensors: the lane type, the split, the params.
pub(crate) struct Rows {
    /// The operation, for errors; also the entry point unless [`Rows::entry`] names another.
    op: &'static str,
    entry: &'static str,
    family: &'static Family,
    /// Index of the lane type in the family: 1 for vec4 lanes.
    lanes: usize,
    params: Params,
}

impl Rows {
    /// Checks that every tensor is f32 `[B, D]` (the shape of the first) and plans pieces of at
    /// most SEGMENT V units.
    pub(crate) fn new(
        family: &'static Family,
        op: &'static str,
        tensors: &[&Tensor],
    ) -> Result<Rows> {
        let shape = tensors[0].shape();
        let &[rows, cols] = shape else {
            return Err(Error::bad(
                op,
                format!("expects [B, D] tensors, got {shape:?}"),
            ));
        };
        for t in tensors {
            t.expect_dtype(op, DType::F32)?;
            t.expect_shape(op, shape)?;
        }
        if u32::try_from(rows * cols).is_err() {
            return Err(Error::bad(
                op,
                "more than 2^32 - 1 elements (indices are u32)",
            ));
        }
        let lanes = lanes(cols);
        let units = cols / lanes;
        let piece = units.min(SEGMENT);
        Ok(Rows {
            op,
            entry: op,
            family,
            lanes: (lanes == 4) as usize,
            params: Params {
                rows: rows as u32,
                cols: units as u32,
                pieces: units.div_ceil(piece) as u32,
                piece: piece as u32,
                classes: cols as u32,
                _pad0: 0,
                scale: 1.0,
                _pad: 0,
            },
        })
    }

    /// One invocation per row, however long (for kernels whose loops do not depend on D).
    pub(crate) fn whole_rows(mut self) -> Rows {
        self.params.pieces = 1;
        self.params.piece = self.params.cols;
        self
    }

    /// Runs entry point `entry` of the shader instead of the one named like the operation.
    pub(crate) fn entry(self, entry: &'static str) -> Rows {
        Rows { entry, ..self }
    }

    pub(crate) fn rows(&self) -> usize {
        self.params.rows as usize
    }

    pub(crate) fn pieces(&self) -> usize {
        self.params.pieces as usize
    }

    /// Records the entry point, one invocation per row piece, binding each tensor to the
    /// variable it names (`a`..`d`, `labels`, `stats`, `o0`..`o3`, `sums`).
    pub(crate) fn launch(&self, tensors: &[Bind]) -> Result<()> {
        self.launch_weighted(tensors, false)
    }

    /// [`Rows::launch`] with the family's per-row weights (binding `g`) when `per_row`.
    fn launch_weighted(&self, tensors: &[Bind], per_row: bool) -> Result<()> {
        let entry = self.entry;
        let engine = tensors[0].tensor.engine();
        let most = engine.limits().max_storage_buffers_per_shader_stage as usize;
        if tensors.len() > most {
            return Err(Error::bad(
                entry,
                format!(
                    "binds {} storage buffers; the device allows {most}",
                    tensors.len()
                ),
            ));
        }
        let invocations = self.params.rows as usize * self.pieces();
        let workgroups = invocations.div_ceil(WG) as u32;
        super::launch(
            &self.family[per_row as usize][self.lanes],
            entry,
            &[],
            tensors,
            &self.params,
            workgroups,
        )
    }

    /// Records the entry point writing one sum per row piece into `sums` after the named
    /// `inputs`, and returns the row sums `[B]` (pieces of long rows added by reduce.wgsl).
    pub(crate) fn sums(&self, inputs: &[Bind]) -> Result<Tensor> {
        let engine = inputs[0].tensor.engine();
        let rows = self.params.rows as usize;
        let out = Tensor::uninit(engine, &[rows], DType::F32)?;
        let partial = match self.pieces() {
            1 => out.clone(),
            n => Tensor::uninit(engine, &[rows, n], DType::F32)?,
        };
        let mut all = inputs.to_vec();
        all.push(Bind::write("sums", &partial));
        self.launch(&all)?;
        if self.pieces() > 1 {
            reduce_last_into(Reduce::Sum, &partial, &out)?;
        }
        Ok(out)
    }

    /// Records the entry point as a backward pass: binds the named `inputs`, the row weights
    /// `w` (`g` when per row) and `N` new outputs `o0`..`o{N-1}` of the first input's shape,
    /// which it returns in that order.
    pub(crate) fn grads<const N: usize>(
        mut self,
        inputs: &[Bind],
        w: Weight,
    ) -> Result<[Tensor; N]> {
        const OUTPUTS: [&str; 4] = ["o0", "o1", "o2", "o3"];
        let like = inputs[0].tensor;
        let outputs: Vec<Tensor> = (0..N).map(|_| output(like)).collect::<Result<_>>()?;
        let mut all = inputs.to_vec();
        let per_row = match w {
            Weight::PerRow(g) => {
                expect_per_row(self.op, g, self.rows())?;
                all.push(Bind::read("g", g));
                true
            }
            Weight::Scalar(s) => {
                self.params.scale = s;
                false
            }
        };
        all.extend(outputs.iter().zip(OUTPUTS).map(|(t, n)| Bind::write(n, t)));
        self.launch_weighted(&all, per_row)?;
        Ok(outputs.try_into().expect("N outputs"))
    }
}

/// Elements per V unit for rows `cols` long: 4 (vec4 loads) when `cols` is a multiple of 4.
fn lanes(cols: usize) -> usize {
    if cols.is_multiple_of(4) { 4 } else { 1 }
}

/// Errors unless `g` is f32 `[rows]`: one value per row.
fn expect_per_row(op: &'static str, g: &Tensor, rows: usize) -> Result<()> {
    g.expect_dtype(op, DType::F32)?;
    g.expect_shape(op, &[rows])
}

/// An uninitialised f32 tensor of `like`'s shape, for a kernel to fill.
pub(crate) fn output(like: &Tensor) -> Result<Tensor> {
    Tensor::uninit(like.engine(), like.shape(), DType::F32)
}
