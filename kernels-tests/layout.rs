//! CPU twin of `shaders/layout.wgsl` (transpose, concat, slice, gather, channel permutes) and
//! GPU-vs-CPU checks.
//! Tolerance: none — every kernel is a bit copy, so results must match bit for bit (NaNs too).

use crate::{awkward, error_kind, gpu, rng};
use latent::kernels::layout::{
    concat, copy_along, gather, slice, to_channels_first, to_channels_last, transpose,
};
use latent::{DType, Engine, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

// ---- CPU twin -------------------------------------------------------------------------------

/// `[B, R, C] -> [B, C, R]`.
pub fn cpu_transpose<T: Copy>(x: &[T], r: usize, c: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for m in x.chunks(r * c) {
        for j in 0..c {
            for i in 0..r {
                out.push(m[i * c + j]);
            }
        }
    }
    out
}

/// Product of the axes before and after `axis`.
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis + 1..].iter().product(),
    )
}

/// Joins `(data, shape)` parts along `axis`.
pub fn cpu_concat<T: Copy>(parts: &[(Vec<T>, Vec<usize>)], axis: usize) -> Vec<T> {
    let (outer, inner) = outer_inner(&parts[0].1, axis);
    let mut out = Vec::new();
    for o in 0..outer {
        for (data, shape) in parts {
            let block = shape[axis] * inner;
            out.extend_from_slice(&data[o * block..(o + 1) * block]);
        }
    }
    out
}

pub fn cpu_slice<T: Copy>(
    x: &[T],
    shape: &[usize],
    axis: usize,
    start: usize,
    end: usize,
) -> Vec<T> {
    let (outer, inner) = outer_inner(shape, axis);
    let mut out = Vec::new();
    for o in 0..outer {
        let row = o * shape[axis] * inner;
        out.extend_from_slice(&x[row + start * inner..row + end * inner]);
    }
    out
}

/// Rows of `table: [N, D]` picked by `indices`; an index ≥ N gives a zero row.
pub fn cpu_gather(table: &[u32], d: usize, indices: &[u32]) -> Vec<u32> {
    let n = table.len() / d;
    let mut out = Vec::new();
    for &i in indices {
        match (i as usize) < n {
            true => out.extend_from_slice(&table[i as usize * d..(i as usize + 1) * d]),
            false => out.extend(std::iter::repeat_n(0, d)),
        }
    }
    out
}

// ---- helpers --------------------------------------------------------------------------------

/// Random bit patterns, uploaded as u32 or as f32 (then NaN payloads, infinities and
/// subnormals are all in there: a kernel that moved values instead of bits would be caught).
fn random_tensor(e: &Engine, r: &mut StdRng, shape: &[usize], dtype: DType) -> (Vec<u32>, Tensor) {
    let bits: Vec<u32> = (0..shape.iter().product::<usize>())
        .map(|_| r.random())
        .collect();
    let t = match dtype {
        DType::U32 => Tensor::from_slice(e, &bits, shape),
        DType::F32 => {
            let f: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            Tensor::from_slice(e, &f, shape)
        }
    };
    (bits, t.unwrap())
}

/// The raw bits of a tensor; compared with `assert!(a == b)`, as the vectors are too long to print.
fn bits_of(t: &Tensor) -> Vec<u32> {
    match t.dtype() {
        DType::U32 => t.to_vec::<u32>().unwrap(),
        DType::F32 => t
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect(),
    }
}

fn random_dtype(r: &mut StdRng) -> DType {
    if r.random_bool(0.5) {
        DType::F32
    } else {
        DType::U32
    }
}

fn random_shape(r: &mut StdRng, ndim: usize, max: usize) -> Vec<usize> {
    (0..ndim).map(|_| awkward(r, max)).collect()
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn channel_permutes_match_cpu_bit_for_bit_and_invert_each_other() {
    let e = gpu!();
    let mut r = rng(12);
    // C = 4 and 8 take the vec4 entry points, the others the scalar ones; 1×1 images too.
    for (case, c) in [1, 3, 4, 5, 8, 12].into_iter().enumerate() {
        let shape = [
            awkward(&mut r, 3),
            c,
            awkward(&mut r, 9),
            awkward(&mut r, 9),
        ];
        let dtype = random_dtype(&mut r);
        let (bits, x) = random_tensor(e, &mut r, &shape, dtype);
        let [b, _, h, w] = shape;
        let rows = to_channels_last(&x).unwrap();
        assert_eq!(
            (rows.shape(), rows.dtype()),
            (&[b * h * w, c][..], dtype),
            "case {case}"
        );
        // [B, C, P] -> [B, P, C] is a batched transpose of the last two axes.
        let want = cpu_transpose(&bits, c, h * w);
        assert!(bits_of(&rows) == want, "{shape:?} {dtype:?}");
        let back = to_channels_first(&rows, shape).unwrap();
        assert_eq!(back.shape(), shape);
        assert!(bits_of(&back) == bits, "{shape:?} {dtype:?} round trip");
    }
    let x = Tensor::zeros(e, &[2, 3, 4], DType::F32).unwrap();
    assert_eq!(error_kind(to_channels_last(&x)), "BadInput");
    let rows = Tensor::zeros(e, &[10, 3], DType::F32).unwrap();
    assert_eq!(
        error_kind(to_channels_first(&rows, [2, 3, 2, 2])),
        "ShapeMismatch"
    );
}

#[test]
fn transpose_matches_cpu_bit_for_bit_on_random_batched_shapes() {
    let e = gpu!();
    let mut r = rng(11);
    // Edges 1, primes, 32 (one tile), 33 and 65 (just above one and two tiles).
    for case in 0..40 {
        let ndim = 2 + case % 3;
        let mut shape = random_shape(&mut r, ndim - 2, 3);
        shape.extend([awkward(&mut r, 70), awkward(&mut r, 70)]);
        let dtype = random_dtype(&mut r);
        let (bits, x) = random_tensor(e, &mut r, &shape, dtype);
        let t = transpose(&x).unwrap();
        let (rows, cols) = (shape[ndim - 2], shape[ndim - 1]);
        let mut want_shape = shape.clone();
        want_shape.swap(ndim - 2, ndim - 1);
        assert_eq!((t.shape(), t.dtype()), (&want_shape[..], dtype));
        assert!(
            bits_of(&t) == cpu_transpose(&bits, rows, cols),
            "{shape:?} {dtype:?}"
        );
    }
}

#[test]
fn transpose_covers_more_than_65535_workgroups() {
    let e = gpu!();
    let mut r = rng(12);
    // One 32×32 tile per 2×3 matrix: 70,000 workgroups, so the grid is folded into 2-D.
    let shape = [70_000, 2, 3];
    let (bits, x) = random_tensor(e, &mut r, &shape, DType::U32);
    assert!(bits_of(&transpose(&x).unwrap()) == cpu_transpose(&bits, 2, 3));
}

#[test]
fn concat_matches_cpu_bit_for_bit_and_slicing_gives_the_parts_back() {
    let e = gpu!();
    let mut r = rng(13);
    for case in 0..40 {
        let ndim = 1 + case % 4;
        let axis = r.random_range(0..ndim);
        let base = random_shape(&mut r, ndim, if ndim > 2 { 9 } else { 70 });
        let dtype = random_dtype(&mut r);
        let mut parts = Vec::new();
        for _ in 0..r.random_range(1..=4) {
            let mut shape = base.clone();
            shape[axis] = awkward(&mut r, 9);
            let (bits, t) = random_tensor(e, &mut r, &shape, dtype);
            parts.push((bits, shape, t));
        }
        let tensors: Vec<&Tensor> = parts.iter().map(|p| &p.2).collect();
        let out = concat(&tensors, axis).unwrap();
        let cpu_parts: Vec<(Vec<u32>, Vec<usize>)> =
            parts.iter().map(|p| (p.0.clone(), p.1.clone())).collect();
        assert!(
            bits_of(&out) == cpu_concat(&cpu_parts, axis),
            "{base:?} axis {axis}"
        );
        let mut at = 0;
        for (bits, shape, _) in &parts {
            let back = slice(&out, axis, at..at + shape[axis]).unwrap();
            assert_eq!(back.shape(), &shape[..]);
            assert!(bits_of(&back) == *bits, "part at {at} of {:?}", out.shape());
            at += shape[axis];
        }
    }
}

#[test]
fn slice_matches_cpu_bit_for_bit_along_every_axis() {
    let e = gpu!();
    let mut r = rng(14);
    for case in 0..40 {
        let ndim = 1 + case % 4;
        let shape = random_shape(&mut r, ndim, if ndim > 2 { 12 } else { 300 });
        let axis = r.random_range(0..ndim);
        let start = r.random_range(0..shape[axis]);
        let end = r.random_range(start + 1..=shape[axis]);
        let dtype = random_dtype(&mut r);
        let (bits, x) = random_tensor(e, &mut r, &shape, dtype);
        let got = bits_of(&slice(&x, axis, start..end).unwrap());
        let want = cpu_slice(&bits, &shape, axis, start, end);
        assert!(got == want, "{shape:?} axis {axis} {start}..{end}");
    }
}

#[test]
fn gather_matches_cpu_bit_for_bit_for_any_index_shape() {
    let e = gpu!();
    let mut r = rng(15);
    for case in 0..30 {
        let (n, d) = (awkward(&mut r, 100), awkward(&mut r, 300));
        let index_shape = random_shape(&mut r, case % 4, 20);
        let dtype = random_dtype(&mut r);
        let (table, t) = random_tensor(e, &mut r, &[n, d], dtype);
        let m: usize = index_shape.iter().product();
        let idx: Vec<u32> = (0..m).map(|_| r.random_range(0..n as u32)).collect();
        let ti = Tensor::from_slice(e, &idx, &index_shape).unwrap();
        let out = gather(&t, &ti).unwrap();
        assert_eq!(out.shape(), &[&index_shape[..], &[d]].concat()[..]);
        assert!(
            bits_of(&out) == cpu_gather(&table, d, &idx),
            "[{n}, {d}] by {index_shape:?}"
        );
    }
}

#[test]
fn gather_gives_zero_rows_for_out_of_range_indices() {
    let e = gpu!();
    let table: Vec<u32> = (1..=20).collect();
    let t = Tensor::from_slice(e, &table, &[5, 4]).unwrap();
    // 2^30 + 1 is out of range, but 4·(2^30 + 1) wraps to 4 in u32: an unguarded kernel would
    // read row 1 and look plausible.
    let idx = [0u32, 5, 4, u32::MAX, (1 << 30) + 1, 2];
    let ti = Tensor::from_slice(e, &idx, &[2, 3]).unwrap();
    let got = gather(&t, &ti).unwrap().to_vec::<u32>().unwrap();
    assert_eq!(got, cpu_gather(&table, 4, &idx));
    assert_eq!(&got[4..8], &[0; 4]);
}

#[test]
fn layout_ops_refuse_bad_input_with_typed_errors() {
    let e = gpu!();
    let f = |s: &[usize]| Tensor::zeros(e, s, DType::F32).unwrap();
    let u = |s: &[usize]| Tensor::zeros(e, s, DType::U32).unwrap();
    let (a, b, c) = (f(&[2, 3]), f(&[2, 4]), u(&[2, 4]));
    assert_eq!(error_kind(transpose(&f(&[5]))), "BadInput");
    assert_eq!(error_kind(concat(&[], 0)), "BadInput");
    assert_eq!(error_kind(concat(&[&a, &b], 2)), "BadInput");
    assert_eq!(error_kind(concat(&[&a, &b], 0)), "ShapeMismatch");
    assert_eq!(
        error_kind(concat(&[&a, &f(&[2, 3, 1])], 1)),
        "ShapeMismatch"
    );
    assert_eq!(error_kind(concat(&[&a, &u(&[2, 3])], 0)), "DTypeMismatch");
    assert_eq!(error_kind(slice(&a, 1, 2..4)), "BadInput");
    assert_eq!(error_kind(slice(&a, 1, 2..2)), "BadInput");
    assert_eq!(error_kind(slice(&a, 2, 0..1)), "BadInput");
    assert_eq!(error_kind(gather(&a, &f(&[3]))), "DTypeMismatch");
    assert_eq!(error_kind(gather(&f(&[6]), &u(&[3]))), "BadInput");
    let copy = |src, dst, len| error_kind(copy_along(src, dst, 1, 0, 2, len));
    assert_eq!(copy(&a, &b, 3), "BadInput", "runs past the destination");
    assert_eq!(copy(&b, &b, 2), "Binding", "the output is the input");
    assert_eq!(copy(&a, &c, 2), "DTypeMismatch");
    assert_eq!(copy(&a, &b, 2), "Ok");
}
