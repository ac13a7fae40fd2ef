//! CPU twin of the gated activation (f64 tanh·σ with its condition broadcast by hand); GPU vs
//! CPU in every condition mode, finite differences of the backward, typed errors.

use crate::conv2d::{f32s, f64s, read, upload};
use crate::{assert_close, assert_matches_fd, error_kind, fd_gradients, gpu, rng, uniform};
use latent::kernels::gated::{gated, gated_backward};
use latent::{DType, Tensor};
use rand::Rng;

/// How the condition is shaped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cond {
    None,
    PerChannel,
    PerElement,
}

/// y [B, p, P] of x [B, 2p, P] and the condition (`c` empty, [B, 2p] or [B, 2p, P]).
pub fn cpu_gated(x: &[f64], c: &[f64], mode: Cond, (b, p, n): (usize, usize, usize)) -> Vec<f64> {
    let mut y = Vec::with_capacity(b * p * n);
    for i in 0..b {
        for ch in 0..p {
            for q in 0..n {
                let (ia, ib) = (((i * 2 * p) + ch) * n + q, ((i * 2 * p) + p + ch) * n + q);
                let (ca, cb) = match mode {
                    Cond::None => (0.0, 0.0),
                    Cond::PerChannel => (c[i * 2 * p + ch], c[i * 2 * p + p + ch]),
                    Cond::PerElement => (c[ia], c[ib]),
                };
                let (a, bv) = (x[ia] + ca, x[ib] + cb);
                y.push(a.tanh() / (1.0 + (-bv).exp()));
            }
        }
    }
    y
}

fn shapes(mode: Cond, (b, p, h, w): (usize, usize, usize, usize)) -> (Vec<usize>, Vec<usize>) {
    let x = vec![b, 2 * p, h, w];
    let c = match mode {
        Cond::None => vec![],
        Cond::PerChannel => vec![b, 2 * p, 1],
        Cond::PerElement => x.clone(),
    };
    (x, c)
}

/// Forward against the twin, backward against central differences of Σ r ⊙ y, in every mode
/// on random sizes (odd positions, batch 1, one channel).
#[test]
fn gated_matches_cpu_and_finite_differences_in_every_condition_mode() {
    let e = gpu!();
    let mut r = rng(71);
    for trial in 0..12 {
        let mode = [Cond::None, Cond::PerChannel, Cond::PerElement][trial % 3];
        let dims = (
            r.random_range(1..=3),
            r.random_range(1..=5),
            r.random_range(1..=4),
            2 * r.random_range(0..3) + 1,
        );
        let (xs, cs) = shapes(mode, dims);
        let (b, p, n) = (dims.0, dims.1, dims.2 * dims.3);
        let x = uniform(&mut r, xs.iter().product(), -3.0, 3.0);
        let c = uniform(
            &mut r,
            cs.iter().product::<usize>() * usize::from(mode != Cond::None),
            -1.0,
            1.0,
        );
        let rw = uniform(&mut r, b * p * n, -1.0, 1.0);
        let what = format!("gated {mode:?} {xs:?}");
        let xt = upload(e, &x, &xs);
        let ct = (mode != Cond::None).then(|| upload(e, &c, &cs));
        let y = gated(&xt, ct.as_ref()).unwrap();
        assert_eq!(y.shape(), [b, p, dims.2, dims.3]);
        let want = cpu_gated(&f64s(&x), &f64s(&c), mode, (b, p, n));
        // tanh and σ on lavapipe are within a few ulp; their product adds one rounding.
        assert_close(&what, &read(&y), &f32s(&want), 1e-6, 1e-5);

        let loss = |v: &[Vec<f64>]| {
            let y = cpu_gated(&v[0], &v[1], mode, (b, p, n));
            y.iter().zip(&rw).map(|(y, &r)| y * r as f64).sum::<f64>()
        };
        let fd = fd_gradients(loss, &[f64s(&x), f64s(&c)]);
        let g = upload(e, &rw, y.shape());
        let (dx, dc) = gated_backward(&xt, ct.as_ref(), &g).unwrap();
        assert_matches_fd(&format!("{what} dx"), &read(&dx), &fd[0]);
        match dc {
            Some(dc) => {
                assert_eq!(dc.shape(), &cs[..]);
                assert_matches_fd(&format!("{what} dcond"), &read(&dc), &fd[1]);
            }
            None => assert_eq!(mode, Cond::None),
        }
    }
}

#[test]
fn gated_errors_are_typed() {
    let e = gpu!();
    let t = |s: &[usize]| Tensor::zeros(e, s, DType::F32).unwrap();
    let x = t(&[2, 6, 3, 3]);
    assert_eq!(
        error_kind(gated(&t(&[2, 5, 3, 3]), None)),
        "BadInput",
        "odd channels"
    );
    assert_eq!(error_kind(gated(&x, Some(&t(&[2, 6])))), "Ok");
    assert_eq!(error_kind(gated(&x, Some(&t(&[2, 6, 9])))), "ShapeMismatch");
    assert_eq!(error_kind(gated(&x, Some(&t(&[1, 6, 1])))), "ShapeMismatch");
    assert_eq!(
        error_kind(gated_backward(&x, None, &t(&[2, 6, 3, 3]))),
        "ShapeMismatch",
        "g must be [B, p, ...]"
    );
    let u = Tensor::zeros(e, &[2, 6, 3, 3], DType::U32).unwrap();
    assert_eq!(error_kind(gated(&u, None)), "DTypeMismatch");
}
