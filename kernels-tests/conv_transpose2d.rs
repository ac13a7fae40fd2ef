//! CPU twin of conv_transpose2d (the transpose of conv2d's 7-loop twin: x scattered through the
//! taps); GPU vs CPU on random shapes and the W2 decoder shapes, finite differences, typed errors.

use crate::conv2d::{
    Geo, cpu_bias_grad, cpu_conv2d, cpu_conv2d_backward_input, cpu_conv2d_backward_weight, f32s,
    f64s, forward, input_grad, random_geo, read, tol, upload, weight_grad,
};
use crate::{assert_close, assert_matches_fd, error_kind, fd_gradients, gpu, rng, uniform};
use latent::kernels::conv_transpose2d::ConvTranspose2dParams;
use latent::kernels::conv2d::{self, TapSource};
use latent::{Engine, Tensor};
use rand::Rng;

/// A transposed convolution x [b, cin, h, w] -> y [b, cout, ho, wo] seen as the convolution it
/// transposes: `conv` maps y's shape back to x's (conv.c = cout, conv.cout = cin).
#[derive(Clone, Copy, Debug)]
struct Case {
    conv: Geo,
    output_padding: [usize; 2],
}

impl Case {
    /// The conv-transpose of x [b, cin, h, w] with a kh×kw kernel (its output size from PyTorch's formula).
    fn new(
        b: usize,
        cin: usize,
        hw: [usize; 2],
        cout: usize,
        k: [usize; 2],
        p: &ConvTranspose2dParams,
    ) -> Option<Case> {
        let size = |a: usize| {
            ((hw[a] - 1) * p.stride[a] + p.dilation[a] * (k[a] - 1) + p.output_padding[a] + 1)
                .checked_sub(2 * p.padding[a])
                .filter(|&v| v > 0)
        };
        let conv = Geo {
            b,
            c: cout,
            h: size(0)?,
            w: size(1)?,
            cout: cin,
            kh: k[0],
            kw: k[1],
            p: p.conv(),
        };
        Some(Case {
            conv,
            output_padding: p.output_padding,
        })
    }
    fn params(&self) -> ConvTranspose2dParams {
        let c = self.conv.p;
        ConvTranspose2dParams {
            stride: c.stride,
            padding: c.padding,
            dilation: c.dilation,
            output_padding: self.output_padding,
        }
    }
    fn x_shape(&self) -> [usize; 4] {
        self.conv.y_shape()
    }
    fn y_shape(&self) -> [usize; 4] {
        self.conv.x_shape()
    }
    fn w_shape(&self) -> [usize; 4] {
        self.conv.w_shape()
    }
}

/// y = conv_transpose2d(x, w) + bias: conv2d's input gradient with x in the place of dy.
fn cpu_conv_transpose2d(c: &Case, x: &[f64], w: &[f64], bias: &[f64]) -> Vec<f64> {
    let g = &c.conv;
    let mut y = cpu_conv2d_backward_input(g, x, w);
    for (i, v) in y.iter_mut().enumerate() {
        *v += bias[(i / (g.h * g.w)) % g.c];
    }
    y
}

fn check(e: &Engine, c: &Case, seed: u64) {
    let mut r = rng(seed);
    let g = &c.conv;
    let [nx, nw, ny] = [c.x_shape(), c.w_shape(), c.y_shape()].map(|s| s.iter().product::<usize>());
    let x = uniform(&mut r, nx, -1.0, 1.0);
    let w = uniform(&mut r, nw, -1.0, 1.0);
    let b = uniform(&mut r, g.c, -1.0, 1.0);
    let dy = uniform(&mut r, ny, -1.0, 1.0);
    let (xt, wt, bt, dyt) = (
        upload(e, &x, &c.x_shape()),
        upload(e, &w, &c.w_shape()),
        upload(e, &b, &[g.c]),
        upload(e, &dy, &c.y_shape()),
    );
    let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
    let p = c.params();
    let what = |op: &str| format!("{op} {c:?}");

    let y = forward(TapSource::Transposed(p), &xt, &wt, Some(&bt)).expect("conv_transpose2d");
    assert_eq!(y.shape(), c.y_shape());
    let want = cpu_conv_transpose2d(c, &x64, &w64, &f64s(&b));
    assert_close(
        &what("conv_transpose2d"),
        &read(&y),
        &f32s(&want),
        tol(g.cout * g.kh * g.kw + 1),
        1e-5,
    );

    let dx = input_grad(TapSource::Transposed(p), &dyt, &wt, &c.x_shape()).expect("dx");
    let want = cpu_conv2d(g, &dy64, &w64, None);
    assert_close(
        &what("conv_transpose2d dx"),
        &read(&dx),
        &f32s(&want),
        tol(g.k()),
        1e-5,
    );

    let dw = weight_grad(TapSource::Transposed(p), &dyt, &xt, &c.w_shape(), None).expect("dw");
    let want = cpu_conv2d_backward_weight(g, &x64, &dy64);
    assert_close(
        &what("conv_transpose2d dw"),
        &read(&dw),
        &f32s(&want),
        tol(nx / g.cout),
        1e-5,
    );

    let db = conv2d::bias_grad(&dyt).expect("db");
    let want = cpu_bias_grad(&dy64, g.c, g.h * g.w);
    assert_close(
        &what("conv_transpose2d db"),
        &read(&db),
        &f32s(&want),
        tol(ny / g.c),
        1e-5,
    );
}

#[test]
fn conv_transpose2d_matches_cpu_on_random_shapes() {
    let e = gpu!();
    let mut r = rng(77);
    let mut done = 0;
    while done < 25 {
        // Sizes from conv2d's generator, read as the transposed convolution's input and kernel.
        let g = random_geo(&mut r);
        let s = g.p.stride;
        let p = ConvTranspose2dParams {
            stride: s,
            padding: g.p.padding,
            dilation: g.p.dilation,
            output_padding: [r.random_range(0..s[0]), r.random_range(0..s[1])],
        };
        let hw = [g.h.min(9), g.w.min(9)];
        if let Some(c) = Case::new(g.b, g.c, hw, g.cout, [g.kh, g.kw], &p) {
            check(e, &c, 500 + done);
            done += 1;
        }
    }
}

#[test]
fn conv_transpose2d_matches_cpu_on_the_w2_decoder_shapes() {
    // BENCH.md's decoder (k4 s2 p1): 64→32 from 7×7 to 14×14 and 32→1 from 14×14 to 28×28.
    let e = gpu!();
    let p = ConvTranspose2dParams::square(2, 1, 1, 0);
    for (i, (cin, hw, cout)) in [(64, 7, 32), (32, 14, 1)].into_iter().enumerate() {
        let c = Case::new(4, cin, [hw; 2], cout, [4, 4], &p).expect("W2 shape");
        assert_eq!(c.y_shape(), [4, cout, 2 * hw, 2 * hw]);
        check(e, &c, 60 + i as u64);
    }
}

#[test]
fn conv_transpose2d_matches_cpu_on_the_implicit_gemm_paths() {
    // Shapes the sub-pixel forward (output channels ≥ 16, input channels % 8 == 0, kernel a
    // multiple of the stride, no dilation) and the implicit-GEMM dx and dw (kw % 4 == 0) run:
    // batch 3, odd sizes, output padding, stride 1, 2 and 4, a second channel tile (40 outputs).
    let e = gpu!();
    let p = |s: [usize; 2], pad: [usize; 2], out: [usize; 2]| ConvTranspose2dParams {
        stride: s,
        padding: pad,
        dilation: [1, 1],
        output_padding: out,
    };
    let cases = [
        Case::new(3, 64, [7, 7], 32, [4, 4], &p([2, 2], [1, 1], [0, 0])),
        Case::new(3, 16, [5, 3], 17, [4, 4], &p([2, 2], [1, 2], [1, 1])),
        Case::new(3, 8, [3, 6], 40, [2, 8], &p([1, 4], [0, 3], [0, 2])),
        Case::new(1, 24, [4, 5], 16, [6, 4], &p([3, 2], [2, 0], [2, 1])),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        check(e, &c.expect("a non-empty output"), 90 + i as u64);
    }
}

#[test]
fn conv_transpose2d_gradients_match_finite_differences() {
    let e = gpu!();
    let params = [
        ConvTranspose2dParams::square(2, 1, 1, 1),
        ConvTranspose2dParams {
            stride: [1, 3],
            padding: [0, 2],
            dilation: [2, 1],
            output_padding: [0, 2],
        },
    ];
    for (n, p) in params.iter().enumerate() {
        let c = Case::new(2, 3, [4, 3], 2, [3, 3], p).expect("shape");
        let g = &c.conv;
        let mut r = rng(400 + n as u64);
        let x = uniform(&mut r, c.x_shape().iter().product(), -1.0, 1.0);
        let w = uniform(&mut r, c.w_shape().iter().product(), -1.0, 1.0);
        let b = uniform(&mut r, g.c, -1.0, 1.0);
        let rw = uniform(&mut r, c.y_shape().iter().product(), -1.0, 1.0);
        let loss = |v: &[Vec<f64>]| {
            let y = cpu_conv_transpose2d(&c, &v[0], &v[1], &v[2]);
            y.iter().zip(&rw).map(|(y, &r)| y * r as f64).sum::<f64>()
        };
        let fd = fd_gradients(loss, &[f64s(&x), f64s(&w), f64s(&b)]);
        let dy = upload(e, &rw, &c.y_shape());
        let dx = input_grad(
            TapSource::Transposed(*p),
            &dy,
            &upload(e, &w, &c.w_shape()),
            &c.x_shape(),
        )
        .unwrap();
        let dw = weight_grad(
            TapSource::Transposed(*p),
            &dy,
            &upload(e, &x, &c.x_shape()),
            &c.w_shape(),
            None,
        )
        .unwrap();
        let db = conv2d::bias_grad(&dy).unwrap();
        assert_matches_fd("conv_transpose2d dx", &read(&dx), &fd[0]);
        assert_matches_fd("conv_transpose2d dw", &read(&dw), &fd[1]);
        assert_matches_fd("conv_transpose2d db", &read(&db), &fd[2]);
    }
}

#[test]
fn conv_transpose2d_shape_errors_are_typed() {
    let e = gpu!();
    let t = |shape: &[usize]| Tensor::zeros(e, shape, latent::DType::F32).unwrap();
    let p = ConvTranspose2dParams::square(2, 1, 1, 0);
    let (x, w) = (t(&[1, 4, 3, 3]), t(&[4, 2, 3, 3]));
    assert_eq!(
        error_kind(forward(TapSource::Transposed(p), &x, &w, None)),
        "Ok"
    );
    assert_eq!(
        error_kind(forward(
            TapSource::Transposed(p),
            &x,
            &t(&[3, 2, 3, 3]),
            None
        )),
        "ShapeMismatch"
    );
    assert_eq!(
        error_kind(forward(TapSource::Transposed(p), &x, &w, Some(&t(&[4])))),
        "ShapeMismatch"
    );
    assert_eq!(
        error_kind(forward(
            TapSource::Transposed(ConvTranspose2dParams::square(2, 1, 1, 2)),
            &x,
            &w,
            None
        )),
        "BadInput"
    );
    // (1 − 1)·1 + (1 − 1) + 1 = 1 row before padding; padding 1 leaves none.
    assert_eq!(
        error_kind(forward(
            TapSource::Transposed(ConvTranspose2dParams::square(1, 1, 1, 0)),
            &t(&[1, 4, 1, 1]),
            &t(&[4, 2, 1, 1]),
            None
        )),
        "BadInput"
    );
    assert_eq!(
        error_kind(input_grad(
            TapSource::Transposed(p),
            &t(&[1, 3, 5, 5]),
            &w,
            x.shape()
        )),
        "ShapeMismatch"
    );
    assert_eq!(
        error_kind(weight_grad(
            TapSource::Transposed(p),
            &t(&[1, 2, 4, 4]),
            &x,
            &[4, 2, 3, 3],
            None
        )),
        "ShapeMismatch"
    );
}
