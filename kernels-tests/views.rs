//! Tensor views: a view in the middle of a buffer is read, written, cleared, copied and bound as
//! its own bytes, its neighbours untouched. `cargo test --release --test kernels views`.

use crate::{error_kind, gpu};
use latent::kernels::adam::{AdamConfig, adam_step};
use latent::kernels::elementwise as ew;
use latent::{DType, Tensor};

/// Asserts that `buf` holds `inside(i)` at the view's elements `at..at + len` and `i` (its
/// first contents) everywhere else.
fn expect(what: &str, buf: &Tensor, at: usize, len: usize, inside: impl Fn(usize) -> f32) {
    let got = buf.to_vec::<f32>().unwrap();
    for (i, &g) in got.iter().enumerate() {
        let want = match (at..at + len).contains(&i) {
            true => inside(i - at),
            false => i as f32,
        };
        assert_eq!(g, want, "{what}: element {i}");
    }
}

/// `[0, 1, …, n − 1]` on the shared engine.
fn ramp(n: usize) -> Tensor {
    let e = crate::engine().expect("the tests' engine");
    Tensor::from_slice(e, &(0..n).map(|i| i as f32).collect::<Vec<_>>(), &[n]).unwrap()
}

#[test]
fn a_view_in_the_middle_of_a_buffer_is_read_written_cleared_copied_and_bound_alone() {
    let e = gpu!();
    let a = e.view_align();
    // Neighbours on both sides, and a length that is not a multiple of 4 (scalar kernel paths).
    let (n, at, len) = (4 * a + 7, a, 2 * a + 3);
    let buf = ramp(n);
    let v = buf.view(at, &[len]).unwrap();
    assert_eq!(v.byte_offset(), 4 * at as u64);
    assert_eq!(v.byte_len(), 4 * len as u64);
    assert!(v.same_buffer(&buf) && v.overlaps(&buf));

    let read: Vec<f32> = v.to_vec().unwrap();
    assert_eq!(read, (at..at + len).map(|i| i as f32).collect::<Vec<_>>());

    v.write_from_slice(&vec![-1.0f32; len]).unwrap();
    expect("write", &buf, at, len, |_| -1.0);

    e.clear(&v).unwrap();
    expect("clear", &buf, at, len, |_| 0.0);

    let values: Vec<f32> = (0..len).map(|i| 100.0 + i as f32).collect();
    let src = Tensor::from_slice(e, &values, &[len]).unwrap();
    e.copy(&src, &v).unwrap();
    expect("copy in", &buf, at, len, |i| 100.0 + i as f32);
    let out = Tensor::zeros(e, &[len], DType::F32).unwrap();
    e.copy(&v, &out).unwrap();
    assert_eq!(out.to_vec::<f32>().unwrap(), values, "copy out");

    // Bound by kernels: written (fill), updated in place (accumulate), read (accumulate's x).
    ew::fill(&v, 7.0).unwrap();
    expect("fill", &buf, at, len, |_| 7.0);
    ew::accumulate(&v, &src, 1.0).unwrap();
    expect("accumulate into", &buf, at, len, |i| 107.0 + i as f32);
    ew::accumulate(&out, &v, -1.0).unwrap();
    let diff = out.to_vec::<f32>().unwrap();
    assert!(diff.iter().all(|&d| d == -7.0), "accumulate from: {diff:?}");

    // A reshape of a view keeps its place.
    let r = v.reshape(&[1, len]).unwrap();
    assert_eq!(r.byte_offset(), v.byte_offset());
}

#[test]
fn a_copy_between_two_views_of_one_buffer_moves_only_their_bytes() {
    let e = gpu!();
    let a = e.view_align();
    let n = 4 * a;
    let buf = ramp(n);
    let (from, to) = (
        buf.view(0, &[a + 1]).unwrap(),
        buf.view(2 * a, &[a + 1]).unwrap(),
    );
    e.copy(&from, &to).unwrap();
    expect("copy within a buffer", &buf, 2 * a, a + 1, |i| i as f32);
    // Overlapping ranges: the source is read before the destination is written.
    let buf = ramp(n);
    let (from, to) = (
        buf.view(0, &[2 * a]).unwrap(),
        buf.view(a, &[2 * a]).unwrap(),
    );
    e.copy_region(&from, 0, &to, 0, 2 * a).unwrap();
    let got = buf.to_vec::<f32>().unwrap();
    let want: Vec<f32> = (0..n)
        .map(|i| match i {
            i if i < a => i as f32,
            i if i < 3 * a => (i - a) as f32,
            i => i as f32,
        })
        .collect();
    assert_eq!(got, want, "overlapping copy");
}

#[test]
fn views_refuse_misalignment_overruns_and_aliased_writes() {
    let e = gpu!();
    let a = e.view_align();
    let buf = Tensor::zeros(e, &[4 * a], DType::F32).unwrap();
    assert_eq!(
        error_kind(buf.view(1, &[4])),
        "BadView",
        "off the alignment"
    );
    assert_eq!(
        error_kind(buf.view(3 * a, &[a + 1])),
        "BadView",
        "past the end"
    );
    assert_eq!(error_kind(buf.view(0, &[0])), "EmptyTensor");
    // A view of a view is placed from the buffer's start.
    let inner = buf.view(a, &[2 * a]).unwrap();
    assert_eq!(inner.view(a, &[a]).unwrap().byte_offset(), 8 * a as u64);

    // Disjoint views may all be written by one dispatch; a written view may not overlap
    // another binding, nor share its buffer with one the kernel only reads (wgpu refuses it).
    let part = |i: usize| buf.view(i * a, &[a]).unwrap();
    let (w, m, v, g) = (part(0), part(1), part(2), part(3));
    let cfg = AdamConfig::default();
    assert_eq!(error_kind(adam_step(&w, &g, &m, &v, 1, &cfg)), "Binding");
    let other = Tensor::zeros(e, &[a], DType::F32).unwrap();
    adam_step(&w, &other, &m, &v, 1, &cfg).unwrap();
    let overlap = buf.view(0, &[2 * a]).unwrap().view(0, &[a]).unwrap();
    assert_eq!(
        error_kind(adam_step(&w, &other, &overlap, &v, 1, &cfg)),
        "Binding",
        "the same bytes twice"
    );
}
