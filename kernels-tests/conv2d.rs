//! CPU twin of conv2d (the direct 7-loop convolution in f64, the spec) and its adjoints; GPU vs
//! CPU on random shapes and the W2 shapes, finite-difference gradient checks, typed shape errors.

use crate::{
    assert_close, assert_matches_fd, error_kind, fd_gradients, gpu, portable_engine, rng, uniform,
};
use latent::kernels::conv2d::{self, Conv, Conv2dParams, TapSource, WeightGrad};
use latent::{DType, Engine, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

// ---- the plan, one result at a time (for conv2d, conv_transpose2d and masked_conv) ----------

/// y of the plan of `source` for x and w.
pub fn forward(
    source: TapSource,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> latent::Result<Tensor> {
    let plan = Conv::new(source, x.shape(), w.shape())?;
    Ok(plan.forward(x, w, bias, false)?.0)
}

/// dx alone from dy, for an input of `x_shape`.
pub fn input_grad(
    source: TapSource,
    dy: &Tensor,
    w: &Tensor,
    x_shape: &[usize],
) -> latent::Result<Tensor> {
    let plan = Conv::new(source, x_shape, w.shape())?;
    Ok(plan.backward(dy, Some(w), None)?.expect("dx was asked for"))
}

/// dw alone from dy and x (x's columns gathered by `Conv::keep`), added to `into` when given
/// (and returned), else in a new tensor.
pub fn weight_grad(
    source: TapSource,
    dy: &Tensor,
    x: &Tensor,
    w_shape: &[usize],
    into: Option<&Tensor>,
) -> latent::Result<Tensor> {
    let plan = Conv::new(source, x.shape(), w_shape)?;
    let dw = match into {
        Some(t) => t.clone(),
        None => Tensor::uninit(x.engine(), w_shape, DType::F32)?,
    };
    let saved = plan.keep(x)?;
    let grad = WeightGrad {
        saved: &saved,
        into: &dw,
        accumulate: into.is_some(),
    };
    plan.backward(dy, None, Some(grad))?;
    Ok(dw)
}

// ---- CPU twin -------------------------------------------------------------------------------

/// One convolution: x [b, c, h, w] * weight [cout, c, kh, kw] -> y [b, cout, oh, ow].
#[derive(Clone, Copy, Debug)]
pub struct Geo {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub p: Conv2dParams,
}

impl Geo {
    /// H' = (H + 2p − d(k−1) − 1)/s + 1 per axis, `None` when the output would be empty.
    pub fn out(&self) -> Option<(usize, usize)> {
        let axis = |n: usize, k: usize, a: usize| {
            let span = self.p.dilation[a] * (k - 1) + 1;
            (n + 2 * self.p.padding[a])
                .checked_sub(span)
                .map(|v| v / self.p.stride[a] + 1)
        };
        Some((axis(self.h, self.kh, 0)?, axis(self.w, self.kw, 1)?))
    }
    pub fn x_shape(&self) -> [usize; 4] {
        [self.b, self.c, self.h, self.w]
    }
    pub fn w_shape(&self) -> [usize; 4] {
        [self.cout, self.c, self.kh, self.kw]
    }
    pub fn y_shape(&self) -> [usize; 4] {
        let (oh, ow) = self.out().expect("non-empty output");
        [self.b, self.cout, oh, ow]
    }
    /// Taps per output value: the forward contraction length.
    pub fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
}

/// The 7 loops of the direct convolution: calls `f(x index, w index, y index)` for every tap
/// that reads inside the image (taps in the padding read zeros and contribute nothing).
pub fn for_each_tap(g: &Geo, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = g.out().expect("non-empty output");
    let [s, p, d] = [g.p.stride, g.p.padding, g.p.dilation];
    for b in 0..g.b {
        for co in 0..g.cout {
            for y in 0..oh {
                for x in 0..ow {
                    let yi = ((b * g.cout + co) * oh + y) * ow + x;
                    for ci in 0..g.c {
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                let ih = (y * s[0] + i * d[0]) as isize - p[0] as isize;
                                let iw = (x * s[1] + j * d[1]) as isize - p[1] as isize;
                                if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize {
                                    continue;
                                }
                                let xi = ((b * g.c + ci) * g.h + ih as usize) * g.w + iw as usize;
                                let wi = ((co * g.c + ci) * g.kh + i) * g.kw + j;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y = conv2d(x, w) + bias, accumulated in f64.
pub fn cpu_conv2d(g: &Geo, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let (oh, ow) = g.out().expect("non-empty output");
    let mut y = vec![0.0; g.b * g.cout * oh * ow];
    for_each_tap(g, |xi, wi, yi| y[yi] += w[wi] * x[xi]);
    if let Some(bias) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v += bias[(i / (oh * ow)) % g.cout];
        }
    }
    y
}

/// The transpose in x: dx = Σ over the taps reading each x of dy·w.
pub fn cpu_conv2d_backward_input(g: &Geo, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; g.x_shape().iter().product()];
    for_each_tap(g, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// The transpose in w: dw = Σ over the taps using each weight of dy·x.
pub fn cpu_conv2d_backward_weight(g: &Geo, dy: &[f64], x: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; g.w_shape().iter().product()];
    for_each_tap(g, |xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
    dw
}

/// Σ dy over batch and pixels per channel of dy [B, C, H, W].
pub fn cpu_bias_grad(dy: &[f64], c: usize, pixels: usize) -> Vec<f64> {
    let mut db = vec![0.0; c];
    for (i, v) in dy.iter().enumerate() {
        db[(i / pixels) % c] += v;
    }
    db
}

// ---- helpers shared with conv_transpose2d ----------------------------------------------------

/// f32 sums of K products of values in [-1, 1] drift like sqrt(K)·ε relative to f64 (as matmul).
pub fn tol(k: usize) -> f32 {
    2e-6 * (k as f32).sqrt() + 1e-6
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn upload(e: &Engine, v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(e, v, shape).expect("upload")
}

pub fn read(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().expect("readback")
}

/// A random convolution with a non-empty output: kernel 1–7, stride 1–3, padding 0–3,
/// dilation 1–2, batch 1–3, channels including 1 and non-multiples of 4 and 8.
pub fn random_geo(r: &mut StdRng) -> Geo {
    const CHANNELS: [usize; 9] = [1, 2, 3, 5, 7, 8, 9, 13, 16];
    loop {
        let mut pick = || [0, 1].map(|_| r.random_range(1..=7usize));
        let k = pick();
        let g = Geo {
            b: r.random_range(1..=3),
            c: CHANNELS[r.random_range(0..CHANNELS.len())],
            h: r.random_range(1..=17),
            w: r.random_range(1..=17),
            cout: CHANNELS[r.random_range(0..CHANNELS.len())],
            kh: k[0],
            kw: k[1],
            p: Conv2dParams {
                stride: [r.random_range(1..=3), r.random_range(1..=3)],
                padding: [r.random_range(0..=3), r.random_range(0..=3)],
                dilation: [r.random_range(1..=2), r.random_range(1..=2)],
            },
        };
        if g.out().is_some() {
            return g;
        }
    }
}

/// The W2 encoder convolutions of BENCH.md (k4 s2 p1): 1→32 on 28×28 and 32→64 on 14×14.
pub fn w2_encoder(b: usize) -> [Geo; 2] {
    let p = Conv2dParams::square(2, 1, 1);
    let g = |c, hw, cout| Geo {
        b,
        c,
        h: hw,
        w: hw,
        cout,
        kh: 4,
        kw: 4,
        p,
    };
    [g(1, 28, 32), g(32, 14, 64)]
}

// ---- tests ----------------------------------------------------------------------------------

/// Forward, input gradient, weight gradient (with accumulation) and bias gradient of one
/// geometry against the CPU twin.
fn check(e: &Engine, g: &Geo, seed: u64) {
    let mut r = rng(seed);
    let nx: usize = g.x_shape().iter().product();
    let nw: usize = g.w_shape().iter().product();
    let ny: usize = g.y_shape().iter().product();
    let (x, w, b) = (
        uniform(&mut r, nx, -1.0, 1.0),
        uniform(&mut r, nw, -1.0, 1.0),
        uniform(&mut r, g.cout, -1.0, 1.0),
    );
    let dy = uniform(&mut r, ny, -1.0, 1.0);
    let acc = uniform(&mut r, nw, -1.0, 1.0);
    let (xt, wt, bt, dyt) = (
        upload(e, &x, &g.x_shape()),
        upload(e, &w, &g.w_shape()),
        upload(e, &b, &[g.cout]),
        upload(e, &dy, &g.y_shape()),
    );
    let what = |op: &str| format!("{op} {g:?}");
    let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));

    let y = forward(TapSource::Dense(g.p), &xt, &wt, Some(&bt)).expect("conv2d");
    assert_eq!(y.shape(), g.y_shape());
    let want = cpu_conv2d(g, &x64, &w64, Some(&f64s(&b)));
    assert_close(
        &what("conv2d"),
        &read(&y),
        &f32s(&want),
        tol(g.k() + 1),
        1e-5,
    );

    let dx = input_grad(TapSource::Dense(g.p), &dyt, &wt, &g.x_shape()).expect("dx");
    let want = cpu_conv2d_backward_input(g, &dy64, &w64);
    assert_close(
        &what("conv2d dx"),
        &read(&dx),
        &f32s(&want),
        tol(g.cout * g.kh * g.kw),
        1e-5,
    );

    let into = upload(e, &acc, &g.w_shape());
    let dw = weight_grad(TapSource::Dense(g.p), &dyt, &xt, &g.w_shape(), Some(&into)).expect("dw");
    let pixels = ny / g.cout;
    let want: Vec<f64> = cpu_conv2d_backward_weight(g, &dy64, &x64)
        .iter()
        .zip(&acc)
        .map(|(d, &a)| d + a as f64)
        .collect();
    assert_close(
        &what("conv2d dw (accumulated)"),
        &read(&dw),
        &f32s(&want),
        tol(pixels + 1),
        1e-5,
    );

    let db = conv2d::bias_grad(&dyt).expect("db");
    let want = cpu_bias_grad(&dy64, g.cout, pixels / g.b);
    assert_close(
        &what("conv2d db"),
        &read(&db),
        &f32s(&want),
        tol(pixels),
        1e-5,
    );
}

#[test]
fn conv2d_matches_cpu_on_random_shapes() {
    let e = gpu!();
    let mut r = rng(2024);
    for trial in 0..30 {
        let g = random_geo(&mut r);
        check(e, &g, 100 + trial);
    }
}

#[test]
fn conv2d_matches_cpu_on_the_wide_matmul_path() {
    // Channel counts and taps that are multiples of 8 send every product to the wide kernels.
    let e = gpu!();
    let g = Geo {
        b: 2,
        c: 8,
        h: 9,
        w: 11,
        cout: 16,
        kh: 3,
        kw: 3,
        p: Conv2dParams::square(1, 1, 1),
    };
    check(e, &g, 7);
    check(
        e,
        &Geo {
            kh: 2,
            kw: 4,
            c: 3,
            p: Conv2dParams::square(2, 1, 2),
            ..g
        },
        8,
    );
}

/// The VQ-VAE's layers: 1×1 (columns = the channel rows, one permute), 3×3 with C·9 % 4 == 0
/// (taps packed 4 per store across channels) and with C·9 % 4 != 0 (scalar path).
#[test]
fn conv2d_matches_cpu_on_1x1_and_3x3_layers() {
    let e = gpu!();
    let base = Geo {
        b: 3,
        c: 8,
        h: 7,
        w: 7,
        cout: 12,
        kh: 1,
        kw: 1,
        p: Conv2dParams::default(),
    };
    check(e, &base, 400);
    check(e, &Geo { c: 3, ..base }, 401);
    let k3 = Geo {
        kh: 3,
        kw: 3,
        p: Conv2dParams::square(1, 1, 1),
        ..base
    };
    check(e, &k3, 402);
    check(e, &Geo { c: 5, ..k3 }, 403);
}

/// Kernel rows of 4 or 8 adjacent taps (dilation 1 along x) are cut from aligned vec4 loads:
/// every alignment of the row start, padding on both sides (up to 3, so a row starts before
/// the buffer), odd widths, strides 1-3, the first and last image of the buffer.
#[test]
fn conv2d_matches_cpu_when_kernel_rows_load_as_vectors() {
    let e = gpu!();
    let mut r = rng(77);
    for trial in 0..12 {
        let kw = if trial % 3 == 0 { 8 } else { 4 };
        let g = Geo {
            b: r.random_range(1..=3),
            c: r.random_range(1..=5),
            // Even trials have H % 4 == 0, so the image has a whole number of vec4s (the vector
            // path's condition); odd ones take the scalar path with the same geometry mix.
            h: match trial % 2 {
                0 => 4 * r.random_range(1..=2),
                _ => r.random_range(2..=9),
            },
            w: r.random_range(kw - 2..=13),
            cout: r.random_range(1..=9),
            kh: r.random_range(1..=4),
            kw,
            p: Conv2dParams {
                stride: [r.random_range(1..=3), r.random_range(1..=3)],
                padding: [r.random_range(0..=3), r.random_range(1..=3)],
                dilation: [r.random_range(1..=2), 1],
            },
        };
        if g.out().is_some() {
            check(e, &g, 300 + trial);
        }
    }
}

#[test]
fn conv2d_runs_without_subgroups() {
    let Some(e) = portable_engine() else { return };
    let g = Geo {
        b: 2,
        c: 3,
        h: 8,
        w: 7,
        cout: 5,
        kh: 3,
        kw: 2,
        p: Conv2dParams::square(2, 1, 1),
    };
    check(e, &g, 9);
}

#[test]
fn conv2d_matches_cpu_on_the_w2_encoder_shapes() {
    let e = gpu!();
    for (i, g) in w2_encoder(4).iter().enumerate() {
        check(e, g, 50 + i as u64);
    }
}

/// Central differences of loss = Σ r ⊙ conv2d(x, w) + bias on the CPU twin vs the GPU gradients
/// (dy = r).
#[test]
fn conv2d_gradients_match_finite_differences() {
    let e = gpu!();
    let base = Geo {
        b: 2,
        c: 2,
        h: 5,
        w: 6,
        cout: 3,
        kh: 3,
        kw: 2,
        p: Conv2dParams::square(2, 1, 1),
    };
    let dilated = Geo {
        p: Conv2dParams {
            stride: [1, 2],
            padding: [2, 0],
            dilation: [2, 1],
        },
        ..base
    };
    for (n, g) in [base, dilated].iter().enumerate() {
        let mut r = rng(300 + n as u64);
        let x = uniform(&mut r, g.x_shape().iter().product(), -1.0, 1.0);
        let w = uniform(&mut r, g.w_shape().iter().product(), -1.0, 1.0);
        let b = uniform(&mut r, g.cout, -1.0, 1.0);
        let rw = uniform(&mut r, g.y_shape().iter().product(), -1.0, 1.0);
        let loss = |v: &[Vec<f64>]| {
            let y = cpu_conv2d(g, &v[0], &v[1], Some(&v[2]));
            y.iter().zip(&rw).map(|(y, &r)| y * r as f64).sum::<f64>()
        };
        let fd = fd_gradients(loss, &[f64s(&x), f64s(&w), f64s(&b)]);
        let dy = upload(e, &rw, &g.y_shape());
        let dx = input_grad(
            TapSource::Dense(g.p),
            &dy,
            &upload(e, &w, &g.w_shape()),
            &g.x_shape(),
        )
        .unwrap();
        let dw = weight_grad(
            TapSource::Dense(g.p),
            &dy,
            &upload(e, &x, &g.x_shape()),
            &g.w_shape(),
            None,
        )
        .unwrap();
        let db = conv2d::bias_grad(&dy).unwrap();
        assert_matches_fd("conv2d dx", &read(&dx), &fd[0]);
        assert_matches_fd("conv2d dw", &read(&dw), &fd[1]);
        assert_matches_fd("conv2d db", &read(&db), &fd[2]);
    }
}

#[test]
fn conv2d_shape_errors_are_typed() {
    let e = gpu!();
    let t = |shape: &[usize]| Tensor::zeros(e, shape, latent::DType::F32).unwrap();
    let p = Conv2dParams::default();
    let (x, w) = (t(&[1, 3, 5, 5]), t(&[4, 3, 3, 3]));
    assert_eq!(
        error_kind(forward(TapSource::Dense(p), &x, &t(&[4, 2, 3, 3]), None)),
        "ShapeMismatch"
    );
    assert_eq!(
        error_kind(forward(TapSource::Dense(p), &x, &w, Some(&t(&[3])))),
        "ShapeMismatch"
    );
    assert_eq!(
        error_kind(forward(TapSource::Dense(p), &x, &t(&[4, 3, 6, 3]), None)),
        "BadInput"
    );
    // A 3×3 kernel at dilation 3 spans 7 > 5 + 2·0: empty output.
    assert_eq!(
        error_kind(forward(
            TapSource::Dense(Conv2dParams::square(1, 0, 3)),
            &x,
            &w,
            None
        )),
        "BadInput"
    );
    assert_eq!(
        error_kind(forward(
            TapSource::Dense(Conv2dParams::square(0, 0, 1)),
            &x,
            &w,
            None
        )),
        "BadInput"
    );
    assert_eq!(
        error_kind(forward(TapSource::Dense(p), &t(&[3, 5, 5]), &w, None)),
        "BadInput"
    );
    assert_eq!(
        error_kind(input_grad(
            TapSource::Dense(p),
            &t(&[1, 4, 2, 3]),
            &w,
            &[1, 3, 5, 5]
        )),
        "ShapeMismatch"
    );
    assert_eq!(
        error_kind(weight_grad(
            TapSource::Dense(p),
            &t(&[1, 4, 3, 3]),
            &x,
            &[4, 3, 3, 3],
            Some(&t(&[4, 3, 3]))
        )),
        "ShapeMismatch"
    );
    assert_eq!(error_kind(forward(TapSource::Dense(p), &x, &w, None)), "Ok");
}
