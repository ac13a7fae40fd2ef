//! The implicit-GEMM convolution against conv2d's CPU twin on awkward shapes (odd sizes,
//! padding, strides, batch 3, channel counts off the tiles), and through `Conv`'s choices.

use crate::conv2d::{
    Geo, cpu_conv2d, cpu_conv2d_backward_input, cpu_conv2d_backward_weight, f32s, f64s, input_grad,
    read, tol, upload, weight_grad,
};
use crate::{assert_close, error_kind, gpu, rng, uniform};
use latent::kernels::conv2d::{Conv2dParams, TapSource};
use latent::kernels::conv2d_igemm;

/// y and y + bias of `conv2d_igemm::forward` against the CPU twin.
fn check(e: &latent::Engine, g: &Geo, seed: u64) {
    let mut r = rng(seed);
    let nx: usize = g.x_shape().iter().product();
    let nw: usize = g.w_shape().iter().product();
    let (x, w, b) = (
        uniform(&mut r, nx, -1.0, 1.0),
        uniform(&mut r, nw, -1.0, 1.0),
        uniform(&mut r, g.cout, -1.0, 1.0),
    );
    let (xt, wt, bt) = (
        upload(e, &x, &g.x_shape()),
        upload(e, &w, &g.w_shape()),
        upload(e, &b, &[g.cout]),
    );
    for bias in [None, Some((&bt, f64s(&b)))] {
        let y = conv2d_igemm::forward(&xt, &wt, bias.as_ref().map(|b| b.0), &g.p).expect("igemm");
        assert_eq!(y.shape(), g.y_shape());
        let want = cpu_conv2d(g, &f64s(&x), &f64s(&w), bias.as_ref().map(|b| &b.1[..]));
        let what = format!("conv2d igemm (bias {}) {g:?}", bias.is_some());
        assert_close(&what, &read(&y), &f32s(&want), tol(g.k() + 1), 1e-5);
    }
}

/// A geometry the kernel runs: kw ∈ {4, 8}, dilation 1 along x, C·kh·kw % 8 == 0, and an
/// image of whole vec4s (H·W·C·B % 4 == 0).
fn geo(b: usize, c: usize, hw: [usize; 2], cout: usize, k: [usize; 2], p: Conv2dParams) -> Geo {
    Geo {
        b,
        c,
        h: hw[0],
        w: hw[1],
        cout,
        kh: k[0],
        kw: k[1],
        p,
    }
}

/// Stride, padding and a dilation along y (the kernels need dilation 1 along x).
fn p(stride: [usize; 2], padding: [usize; 2], dh: usize) -> Conv2dParams {
    Conv2dParams {
        stride,
        padding,
        dilation: [dh, 1],
    }
}

#[test]
fn conv2d_igemm_matches_cpu_on_awkward_shapes() {
    let e = gpu!();
    let cases = [
        // The W2 layers at batch 3: 1→32 on 28×28 and 32→64 on 14×14, k4 s2 p1.
        geo(3, 1, [28, 28], 32, [4, 4], p([2, 2], [1, 1], 1)),
        geo(3, 32, [14, 14], 64, [4, 4], p([2, 2], [1, 1], 1)),
        // Odd sizes and channel counts off both tiles (5, 37, 70: one, two and three channel
        // tiles with masked lanes), odd pixel counts, kh odd, padding wider than the stride.
        geo(3, 2, [9, 6], 5, [3, 4], p([2, 1], [2, 3], 1)),
        geo(1, 4, [7, 5], 37, [1, 4], p([1, 2], [0, 1], 1)),
        geo(3, 1, [11, 12], 70, [2, 8], p([3, 2], [1, 3], 2)),
        geo(2, 6, [5, 10], 9, [4, 4], p([1, 1], [3, 0], 2)),
        geo(3, 8, [6, 6], 64, [1, 4], p([2, 2], [1, 2], 1)),
        // H'·W' = 72 (vec4 stores of pixels) with 5 channels and a partial last tile.
        geo(3, 2, [9, 8], 5, [2, 4], p([1, 1], [0, 2], 1)),
    ];
    for (i, g) in cases.iter().enumerate() {
        assert!(g.out().is_some(), "case {i} has an output");
        check(e, g, 500 + i as u64);
    }
}

/// dw from x and dy channels-last, written and accumulated, against the CPU twin.
fn check_weight_grad(e: &latent::Engine, g: &Geo, seed: u64) {
    let mut r = rng(seed);
    let nx: usize = g.x_shape().iter().product();
    let nw: usize = g.w_shape().iter().product();
    let [b, cout, oh, ow] = g.y_shape();
    let pixels = b * oh * ow;
    let (x, dy, acc) = (
        uniform(&mut r, nx, -1.0, 1.0),
        uniform(&mut r, pixels * cout, -1.0, 1.0),
        uniform(&mut r, nw, -1.0, 1.0),
    );
    // The twin takes dy [B, Cout, OH, OW]; the kernel its rows [B·OH·OW, Cout].
    let mut dy_nchw = vec![0.0; dy.len()];
    for (i, &v) in dy.iter().enumerate() {
        let (pix, n) = (i / cout, i % cout);
        let (bi, q) = (pix / (oh * ow), pix % (oh * ow));
        dy_nchw[(bi * cout + n) * oh * ow + q] = v as f64;
    }
    let want = cpu_conv2d_backward_weight(g, &dy_nchw, &f64s(&x));
    let (xt, rows) = (upload(e, &x, &g.x_shape()), upload(e, &dy, &[pixels, cout]));
    for accumulate in [false, true] {
        let into = upload(e, &acc, &g.w_shape());
        conv2d_igemm::weight_grad(&xt, &rows, &into, accumulate, &g.p).expect("igemm dw");
        let want: Vec<f64> = want
            .iter()
            .zip(&acc)
            .map(|(d, &a)| d + if accumulate { a as f64 } else { 0.0 })
            .collect();
        let what = format!("conv2d igemm dw (accumulate {accumulate}) {g:?}");
        assert_close(&what, &read(&into), &f32s(&want), tol(pixels + 1), 1e-5);
    }
}

#[test]
fn conv2d_igemm_weight_grad_matches_cpu_on_awkward_shapes() {
    let e = gpu!();
    let cases = [
        // The W2 32→64 layer at batch 3.
        geo(3, 32, [14, 14], 64, [4, 4], p([2, 2], [1, 1], 1)),
        // Odd sizes and pixel counts off the 8-pixel step; 72 channels (a masked second tile);
        // C·kh·kw = 72 (a half tap tile); dilation 2 along y; padding wider than the stride.
        geo(3, 4, [9, 7], 16, [4, 4], p([2, 1], [1, 2], 1)),
        geo(3, 3, [11, 12], 72, [3, 8], p([3, 2], [1, 3], 2)),
        geo(1, 8, [5, 10], 8, [2, 4], p([1, 1], [3, 0], 1)),
    ];
    for (i, g) in cases.iter().enumerate() {
        assert!(g.out().is_some(), "case {i} has an output");
        check_weight_grad(e, g, 600 + i as u64);
    }
}

#[test]
fn conv2d_input_grad_matches_cpu_on_the_sub_pixel_path() {
    // dx through `Conv` where the sub-pixel gather runs (C ≥ 16, Cout % 8 == 0, kernel a
    // multiple of the stride, no dilation): batch 3, odd sizes, padding, strides 1 to 3.
    let e = gpu!();
    let cases = [
        geo(3, 32, [14, 14], 64, [4, 4], Conv2dParams::square(2, 1, 1)),
        geo(3, 17, [9, 11], 8, [4, 4], Conv2dParams::square(2, 2, 1)),
        geo(3, 40, [7, 5], 16, [3, 2], p([3, 1], [1, 0], 1)),
    ];
    for (i, g) in cases.iter().enumerate() {
        let mut r = rng(700 + i as u64);
        let [b, cout, oh, ow] = g.y_shape();
        let dy = uniform(&mut r, b * cout * oh * ow, -1.0, 1.0);
        let w = uniform(&mut r, g.w_shape().iter().product(), -1.0, 1.0);
        let (dyt, wt) = (upload(e, &dy, &g.y_shape()), upload(e, &w, &g.w_shape()));
        let dx = input_grad(TapSource::Dense(g.p), &dyt, &wt, &g.x_shape()).expect("dx");
        let want = cpu_conv2d_backward_input(g, &f64s(&dy), &f64s(&w));
        let what = format!("conv2d dx {g:?}");
        assert_close(
            &what,
            &read(&dx),
            &f32s(&want),
            tol(cout * g.kh * g.kw),
            1e-5,
        );
    }
}

#[test]
fn conv2d_weight_grad_matches_cpu_on_the_split_path() {
    // dw through `Conv` where the split kernel runs (C·kh·kw < 64, H'·W' % 4 == 0), added to an
    // old gradient: the W2 first layer at batch 3, 12 channels (a masked tile), a half tap tile
    // (C·kh·kw = 24) with two channel tiles, dilation along y, odd sizes.
    let e = gpu!();
    let cases = [
        geo(3, 1, [28, 28], 32, [4, 4], p([2, 2], [1, 1], 1)),
        geo(3, 2, [8, 9], 12, [2, 4], p([1, 1], [0, 1], 1)),
        geo(2, 3, [10, 7], 40, [2, 4], p([2, 1], [1, 2], 2)),
    ];
    for (i, g) in cases.iter().enumerate() {
        let mut r = rng(800 + i as u64);
        let [b, cout, oh, ow] = g.y_shape();
        let nw: usize = g.w_shape().iter().product();
        let x = uniform(&mut r, g.x_shape().iter().product(), -1.0, 1.0);
        let dy = uniform(&mut r, b * cout * oh * ow, -1.0, 1.0);
        let old = uniform(&mut r, nw, -1.0, 1.0);
        let (xt, dyt) = (upload(e, &x, &g.x_shape()), upload(e, &dy, &g.y_shape()));
        let into = upload(e, &old, &g.w_shape());
        let dw =
            weight_grad(TapSource::Dense(g.p), &dyt, &xt, &g.w_shape(), Some(&into)).expect("dw");
        let want: Vec<f64> = cpu_conv2d_backward_weight(g, &f64s(&dy), &f64s(&x))
            .iter()
            .zip(&old)
            .map(|(d, &o)| d + o as f64)
            .collect();
        let what = format!("conv2d dw (split) {g:?}");
        assert_close(&what, &read(&dw), &f32s(&want), tol(b * oh * ow + 1), 1e-5);
    }
}

#[test]
fn conv2d_igemm_refuses_what_it_cannot_run() {
    let e = gpu!();
    let p = Conv2dParams::square(1, 1, 1);
    // kw = 3 (no runs of 4 taps) and C·kh·kw = 12 (not whole steps of 8 taps).
    for (xs, ws) in [([1, 4, 8, 8], [2, 4, 3, 3]), ([1, 1, 8, 8], [2, 1, 3, 4])] {
        let x = upload(e, &vec![0.0; xs.iter().product()], &xs);
        let w = upload(e, &vec![0.0; ws.iter().product()], &ws);
        let r = conv2d_igemm::forward(&x, &w, None, &p);
        assert_eq!(error_kind(r), "BadInput", "{xs:?} * {ws:?}");
    }
}
