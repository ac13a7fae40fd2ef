//! CPU twin of masked_conv: conv2d's direct convolution of the dense kernel multiplied by an
//! explicit 0/1 mask; GPU vs CPU on random shapes, receptive fields, finite differences, errors.

use crate::conv2d::{
    Geo, cpu_bias_grad, cpu_conv2d, cpu_conv2d_backward_input, cpu_conv2d_backward_weight, f32s,
    f64s, forward, input_grad, read, tol, upload, weight_grad,
};
use crate::uniform;
use crate::{assert_close, assert_matches_fd, error_kind, fd_gradients, gpu, portable_engine, rng};
use latent::kernels::conv2d::{self, Conv2dParams, TapSource};
use latent::kernels::masked_conv::{Mask, Taps};
use latent::{DType, Engine, Tensor};
use rand::Rng;

// ---- CPU twin -------------------------------------------------------------------------------

/// The layers of a gated PixelCNN, each a dense kernel with an explicit mask.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Masked(usize, Mask),
    Vertical(usize),
    Horizontal(usize, Mask),
    DownShift,
    Pointwise,
}

impl Kind {
    /// (kh, kw) and the 0/1 mask, written from the rules alone (PyTorch's usual masked conv:
    /// `mask[kh//2, kw//2 + (type == B):] = 0; mask[kh//2 + 1:] = 0`), not from `Taps`.
    pub fn mask(self) -> (usize, usize, Vec<f64>) {
        let (kh, kw) = match self {
            Kind::Masked(k, _) | Kind::Vertical(k) => (k, k),
            Kind::Horizontal(k, _) => (1, k),
            Kind::DownShift => (3, 3),
            Kind::Pointwise => (1, 1),
        };
        let (ci, cj) = (kh / 2, kw / 2);
        let keep = |i: usize, j: usize| match self {
            Kind::Masked(_, m) | Kind::Horizontal(_, m) => {
                i < ci || (i == ci && (j < cj || (j == cj && m == Mask::B)))
            }
            Kind::Vertical(_) => i <= ci,
            Kind::DownShift => i == 0 && j == 1,
            Kind::Pointwise => true,
        };
        let m = (0..kh * kw)
            .map(|q| if keep(q / kw, q % kw) { 1.0 } else { 0.0 })
            .collect();
        (kh, kw, m)
    }

    pub fn taps(self) -> Taps {
        match self {
            Kind::Masked(k, m) => Taps::masked(k, m),
            Kind::Vertical(k) => Taps::vertical(k),
            Kind::Horizontal(k, m) => Taps::horizontal(k, m),
            Kind::DownShift => Ok(Taps::down_shift()),
            Kind::Pointwise => Ok(Taps::pointwise()),
        }
        .expect("valid taps")
    }
}

/// A masked convolution's sizes as conv2d's twin sees them: stride 1, padding kh/2, kw/2.
pub fn geo(kind: Kind, [b, c, h, w, cout]: [usize; 5]) -> Geo {
    let (kh, kw, _) = kind.mask();
    Geo {
        b,
        c,
        h,
        w,
        cout,
        kh,
        kw,
        p: Conv2dParams {
            stride: [1, 1],
            padding: [kh / 2, kw / 2],
            dilation: [1, 1],
        },
    }
}

/// Dense index (i, j) in the kh × kw kernel of each tap.
fn tap_positions(kind: Kind) -> Vec<(usize, usize)> {
    let (kh, kw, _) = kind.mask();
    kind.taps()
        .offsets()
        .iter()
        .map(|&[dy, dx]| {
            let i = (kh / 2) as i32 + dy;
            let j = (kw / 2) as i32 + dx;
            (i as usize, j as usize)
        })
        .collect()
}

/// The dense kernel [Cout, C, kh, kw] of a compact weight [Cout, T, C], with `fill` (not 0) at
/// the masked positions, so that only the explicit mask keeps them out of the twin.
pub fn dense(kind: Kind, g: &Geo, compact: &[f64], fill: f64) -> Vec<f64> {
    let pos = tap_positions(kind);
    let mut d = vec![fill; g.cout * g.c * g.kh * g.kw];
    for o in 0..g.cout {
        for (t, &(i, j)) in pos.iter().enumerate() {
            for c in 0..g.c {
                d[((o * g.c + c) * g.kh + i) * g.kw + j] = compact[(o * pos.len() + t) * g.c + c];
            }
        }
    }
    d
}

/// The dense kernel times the explicit mask.
pub fn masked(kind: Kind, g: &Geo, dense: &[f64]) -> Vec<f64> {
    let (_, _, m) = kind.mask();
    let taps = g.kh * g.kw;
    dense
        .iter()
        .enumerate()
        .map(|(i, v)| v * m[i % taps])
        .collect()
}

/// The twin: conv2d of x with the masked dense kernel (+ bias).
pub fn cpu_masked_conv(
    kind: Kind,
    g: &Geo,
    x: &[f64],
    w: &[f64],
    bias: Option<&[f64]>,
) -> Vec<f64> {
    cpu_conv2d(g, x, &masked(kind, g, &dense(kind, g, w, 0.75)), bias)
}

/// dw of the twin, compact: the dense kernel's gradient at each tap.
pub fn cpu_masked_conv_backward_weight(kind: Kind, g: &Geo, dy: &[f64], x: &[f64]) -> Vec<f64> {
    let dense_dw = cpu_conv2d_backward_weight(g, dy, x);
    let pos = tap_positions(kind);
    let mut dw = Vec::with_capacity(g.cout * pos.len() * g.c);
    for o in 0..g.cout {
        for &(i, j) in &pos {
            for c in 0..g.c {
                dw.push(dense_dw[((o * g.c + c) * g.kh + i) * g.kw + j]);
            }
        }
    }
    dw
}

// ---- tests ----------------------------------------------------------------------------------

fn random_kind(r: &mut impl Rng) -> Kind {
    let k = [1, 3, 5, 7][r.random_range(0..4)];
    let m = if k > 1 && r.random_bool(0.5) {
        Mask::A
    } else {
        Mask::B
    };
    match r.random_range(0..5) {
        0 => Kind::Masked(k, m),
        1 => Kind::Vertical(k),
        2 => Kind::Horizontal(k, m),
        3 => Kind::DownShift,
        _ => Kind::Pointwise,
    }
}

/// Forward, input gradient, weight gradient (with accumulation) and bias gradient of one layer
/// against the twin.
fn check(e: &Engine, kind: Kind, g: &Geo, seed: u64) {
    let mut r = rng(seed);
    let taps = kind.taps();
    let (_, _, mask) = kind.mask();
    assert_eq!(
        taps.len(),
        mask.iter().filter(|&&m| m == 1.0).count(),
        "{kind:?}: one tap per unmasked kernel entry"
    );
    let nx = g.b * g.c * g.h * g.w;
    let nw = g.cout * taps.len() * g.c;
    let ny = g.b * g.cout * g.h * g.w;
    let (x, w, b) = (
        uniform(&mut r, nx, -1.0, 1.0),
        uniform(&mut r, nw, -1.0, 1.0),
        uniform(&mut r, g.cout, -1.0, 1.0),
    );
    let dy = uniform(&mut r, ny, -1.0, 1.0);
    let acc = uniform(&mut r, nw, -1.0, 1.0);
    let w_shape = [g.cout, taps.len(), g.c];
    let (xt, wt, bt, dyt) = (
        upload(e, &x, &g.x_shape()),
        upload(e, &w, &w_shape),
        upload(e, &b, &[g.cout]),
        upload(e, &dy, &g.y_shape()),
    );
    let what = |op: &str| format!("{op} {kind:?} {g:?}");
    let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
    let k = g.c * taps.len();

    let y = forward(TapSource::List(taps.clone()), &xt, &wt, Some(&bt)).expect("masked_conv");
    assert_eq!(y.shape(), g.y_shape());
    let want = cpu_masked_conv(kind, g, &x64, &w64, Some(&f64s(&b)));
    assert_close(
        &what("masked_conv"),
        &read(&y),
        &f32s(&want),
        tol(k + 1),
        1e-5,
    );

    let dx = input_grad(TapSource::List(taps.clone()), &dyt, &wt, &g.x_shape()).expect("dx");
    let dense_w = masked(kind, g, &dense(kind, g, &w64, -2.0));
    let want = cpu_conv2d_backward_input(g, &dy64, &dense_w);
    let k_dx = g.cout * taps.len();
    assert_close(
        &what("masked_conv dx"),
        &read(&dx),
        &f32s(&want),
        tol(k_dx),
        1e-5,
    );

    let into = upload(e, &acc, &w_shape);
    weight_grad(
        TapSource::List(taps.clone()),
        &dyt,
        &xt,
        into.shape(),
        Some(&into),
    )
    .expect("dw");
    let pixels = g.b * g.h * g.w;
    let want: Vec<f64> = cpu_masked_conv_backward_weight(kind, g, &dy64, &x64)
        .iter()
        .zip(&acc)
        .map(|(d, &a)| d + a as f64)
        .collect();
    assert_close(
        &what("masked_conv dw (accumulated)"),
        &read(&into),
        &f32s(&want),
        tol(pixels + 1),
        1e-5,
    );

    let db = conv2d::bias_grad(&dyt).expect("db");
    let want = cpu_bias_grad(&dy64, g.cout, g.h * g.w);
    assert_close(
        &what("masked_conv db"),
        &read(&db),
        &f32s(&want),
        tol(pixels),
        1e-5,
    );
}

#[test]
fn masked_conv_matches_the_explicitly_masked_cpu_twin_on_random_shapes() {
    let e = gpu!();
    const CHANNELS: [usize; 9] = [1, 2, 3, 4, 5, 8, 9, 13, 16];
    let mut r = rng(606);
    for trial in 0..36 {
        let kind = random_kind(&mut r);
        let mut pick = |n: usize| r.random_range(1..=n);
        // Odd sizes mostly, batch 1 every third trial.
        let dims = [
            if trial % 3 == 0 { 1 } else { pick(3) },
            CHANNELS[pick(CHANNELS.len()) - 1],
            2 * pick(6) - 1,
            pick(12),
            CHANNELS[pick(CHANNELS.len()) - 1],
        ];
        check(e, kind, &geo(kind, dims), 700 + trial);
    }
}

#[test]
fn masked_conv_covers_every_layer_kind_and_runs_without_subgroups() {
    let e = gpu!();
    let kinds = [
        Kind::Masked(7, Mask::A),
        Kind::Masked(3, Mask::B),
        Kind::Vertical(5),
        Kind::Horizontal(3, Mask::A),
        Kind::Horizontal(5, Mask::B),
        Kind::DownShift,
        Kind::Pointwise,
    ];
    for (i, &kind) in kinds.iter().enumerate() {
        // C = 8 takes the vec4 paths, C = 3 the scalar ones.
        check(e, kind, &geo(kind, [2, 8, 7, 9, 16]), 800 + i as u64);
        check(e, kind, &geo(kind, [1, 3, 5, 4, 2]), 820 + i as u64);
    }
    let Some(p) = portable_engine() else { return };
    let kind = Kind::Masked(5, Mask::B);
    check(p, kind, &geo(kind, [2, 4, 6, 5, 3]), 840);
}

/// The taps a mask keeps, counted: the skipped ones are never stored or read.
#[test]
fn masked_kernels_store_only_their_taps() {
    assert_eq!(Taps::masked(7, Mask::A).unwrap().len(), 24);
    assert_eq!(Taps::masked(7, Mask::B).unwrap().len(), 25);
    assert_eq!(Taps::vertical(3).unwrap().len(), 6);
    assert_eq!(Taps::horizontal(5, Mask::A).unwrap().len(), 2);
    assert_eq!(Taps::masked(5, Mask::A).unwrap().causality(), Some(Mask::A));
    assert_eq!(
        Taps::horizontal(3, Mask::B).unwrap().causality(),
        Some(Mask::B)
    );
    assert_eq!(Taps::down_shift().causality(), Some(Mask::A));
    assert_eq!(Taps::vertical(3).unwrap().causality(), None);
}

/// dy nonzero at one pixel only: dx = ∂(Σ dy·y)/∂x is the pixel's receptive field. Every input
/// at or after the pixel in raster order (including it for mask A) gets exactly 0.0, every
/// allowed tap a nonzero gradient (in every channel and the other image stays 0).
#[test]
fn masked_conv_gradient_of_a_pixel_is_zero_at_and_after_it() {
    let e = gpu!();
    let (b, c, h, w, cout) = (2, 3, 7, 8, 4);
    for kind in [
        Kind::Masked(5, Mask::A),
        Kind::Masked(5, Mask::B),
        Kind::Masked(3, Mask::A),
        Kind::Horizontal(3, Mask::A),
        Kind::Horizontal(5, Mask::B),
        Kind::DownShift,
    ] {
        let taps = kind.taps();
        let mask = taps.causality().expect("causal layer");
        let mut r = rng(900);
        let wv = uniform(&mut r, cout * taps.len() * c, 0.5, 1.0);
        let wt = upload(e, &wv, &[cout, taps.len(), c]);
        for (py, px) in [(3, 4), (0, 0), (6, 7), (2, 0), (4, 7)] {
            let mut dy = vec![0.0f32; b * cout * h * w];
            for o in 0..cout {
                dy[((b - 1) * cout + o) * h * w + py * w + px] = 1.0 + o as f32;
            }
            let dyt = upload(e, &dy, &[b, cout, h, w]);
            let dx =
                read(&input_grad(TapSource::List(taps.clone()), &dyt, &wt, &[b, c, h, w]).unwrap());
            let i = py * w + px;
            for (n, v) in dx.iter().enumerate() {
                let (img, ch, q) = (n / (c * h * w), n / (h * w) % c, n % (h * w));
                let seen = img == b - 1
                    && taps.offsets().iter().any(|&[ty, tx]| {
                        (py as i32 + ty, px as i32 + tx) == ((q / w) as i32, (q % w) as i32)
                    });
                let causal = q < i || (q == i && mask == Mask::B);
                let at = format!(
                    "{kind:?} pixel ({py}, {px}): dx[{img}, {ch}, {}, {}]",
                    q / w,
                    q % w
                );
                if !causal || img != b - 1 {
                    assert_eq!(*v, 0.0, "{at} must be exactly zero");
                }
                assert_eq!(*v != 0.0, seen, "{at} = {v}: nonzero exactly on the taps");
            }
        }
    }
}

/// Central differences of loss = Σ r ⊙ (masked_conv(x, w) + bias) on the twin vs the GPU's
/// dx, dw and db.
#[test]
fn masked_conv_gradients_match_finite_differences() {
    let e = gpu!();
    for (n, kind) in [
        Kind::Masked(3, Mask::A),
        Kind::Vertical(3),
        Kind::Horizontal(3, Mask::B),
    ]
    .into_iter()
    .enumerate()
    {
        let g = geo(kind, [2, 2, 4, 5, 3]);
        let taps = kind.taps();
        let w_shape = [g.cout, taps.len(), g.c];
        let mut r = rng(950 + n as u64);
        let x = uniform(&mut r, g.x_shape().iter().product(), -1.0, 1.0);
        let w = uniform(&mut r, w_shape.iter().product(), -1.0, 1.0);
        let b = uniform(&mut r, g.cout, -1.0, 1.0);
        let rw = uniform(&mut r, g.y_shape().iter().product(), -1.0, 1.0);
        let loss = |v: &[Vec<f64>]| {
            let y = cpu_masked_conv(kind, &g, &v[0], &v[1], Some(&v[2]));
            y.iter().zip(&rw).map(|(y, &r)| y * r as f64).sum::<f64>()
        };
        let fd = fd_gradients(loss, &[f64s(&x), f64s(&w), f64s(&b)]);
        let dy = upload(e, &rw, &g.y_shape());
        let xt = upload(e, &x, &g.x_shape());
        let wt = upload(e, &w, &w_shape);
        let dx = input_grad(TapSource::List(taps.clone()), &dy, &wt, &g.x_shape()).unwrap();
        let dw = weight_grad(TapSource::List(taps.clone()), &dy, &xt, &w_shape, None).unwrap();
        let db = conv2d::bias_grad(&dy).unwrap();
        assert_matches_fd(&format!("{kind:?} dx"), &read(&dx), &fd[0]);
        assert_matches_fd(&format!("{kind:?} dw"), &read(&dw), &fd[1]);
        assert_matches_fd(&format!("{kind:?} db"), &read(&db), &fd[2]);
    }
}

#[test]
fn masked_conv_errors_are_typed() {
    let e = gpu!();
    let t = |shape: &[usize]| Tensor::zeros(e, shape, DType::F32).unwrap();
    let taps = Taps::masked(3, Mask::B).unwrap();
    let x = t(&[1, 3, 5, 5]);
    let ok = |r: latent::Result<Taps>| error_kind(r);
    assert_eq!(ok(Taps::masked(1, Mask::A)), "BadInput", "no taps left");
    assert_eq!(ok(Taps::masked(4, Mask::B)), "BadInput", "even kernel");
    assert_eq!(ok(Taps::new(vec![[0, 0], [0, 0]])), "BadInput", "duplicate");
    assert_eq!(
        ok(Taps::new((0..65).map(|i| [-1, i]).collect())),
        "BadInput"
    );
    assert_eq!(
        error_kind(forward(
            TapSource::List(taps.clone()),
            &x,
            &t(&[4, 5, 3]),
            None
        )),
        "Ok"
    );
    assert_eq!(
        error_kind(forward(
            TapSource::List(taps.clone()),
            &x,
            &t(&[4, 4, 3]),
            None
        )),
        "ShapeMismatch",
        "weight taps ≠ tap list"
    );
    assert_eq!(
        error_kind(forward(
            TapSource::List(taps.clone()),
            &x,
            &t(&[4, 5, 2]),
            None
        )),
        "ShapeMismatch",
        "weight channels ≠ input channels"
    );
    assert_eq!(
        error_kind(forward(
            TapSource::List(taps.clone()),
            &x,
            &t(&[4, 5, 3]),
            Some(&t(&[3]))
        )),
        "ShapeMismatch",
        "bias length"
    );
    assert_eq!(
        error_kind(forward(
            TapSource::List(taps.clone()),
            &t(&[3, 5, 5]),
            &t(&[4, 5, 3]),
            None
        )),
        "BadInput"
    );
    assert_eq!(
        error_kind(input_grad(
            TapSource::List(taps.clone()),
            &t(&[1, 4, 5, 4]),
            &t(&[4, 5, 3]),
            &[1, 3, 5, 5]
        )),
        "ShapeMismatch"
    );
    let u = Tensor::zeros(e, &[1, 3, 5, 5], DType::U32).unwrap();
    assert_eq!(
        error_kind(forward(
            TapSource::List(taps.clone()),
            &u,
            &t(&[4, 5, 3]),
            None
        )),
        "DTypeMismatch"
    );
}
