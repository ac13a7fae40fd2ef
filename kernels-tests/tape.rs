//! Finite-difference gradient checks of every tape op: the GPU backward against central
//! differences (f64) of a CPU twin of the forward, through loss = Σ w ⊙ f(inputs) with random w.

use crate::elementwise::cpu_unary;
use crate::{gpu, rng, uniform};
use latent::kernels::elementwise::{Binary, Unary};
use latent::nn::{Linear, Module};
use latent::optim::KlSchedule;
use latent::tape::{Param, Tape, Var};
use latent::{Engine, Error, Tensor};

type Cpu = dyn Fn(&[Vec<f64>]) -> Vec<f64>;

/// Checks d/dinputs of Σ w·f(inputs) on the GPU tape against f64 central differences of `cpu`.
/// Tolerance: the GPU works in f32 (≈1e-6 relative per op), the differences are exact to ~1e-9.
fn check(
    e: &Engine,
    what: &str,
    inputs: &[(Vec<f32>, Vec<usize>)],
    gpu: impl Fn(&[Var]) -> Var,
    cpu: &Cpu,
) {
    let params: Vec<Param> = inputs
        .iter()
        .enumerate()
        .map(|(i, (d, s))| {
            Param::new(format!("in{i}"), Tensor::from_slice(e, d, s).unwrap()).unwrap()
        })
        .collect();
    let tape = Tape::new(e);
    let vars: Vec<Var> = params.iter().map(|p| tape.param(p)).collect();
    let y = gpu(&vars);
    let mut r = rng(99);
    let w = uniform(&mut r, y.value().numel(), -1.0, 1.0);
    let wv = tape.input(&Tensor::from_slice(e, &w, y.shape()).unwrap());
    let loss = y.mul(&wv).unwrap().sum().unwrap();
    tape.backward(&loss).unwrap();

    let x64: Vec<Vec<f64>> = inputs
        .iter()
        .map(|(d, _)| d.iter().map(|&v| v as f64).collect())
        .collect();
    let lossf = |xs: &[Vec<f64>]| {
        cpu(xs)
            .iter()
            .zip(&w)
            .map(|(a, b)| a * *b as f64)
            .sum::<f64>()
    };
    for (i, p) in params.iter().enumerate() {
        assert!(p.has_grad(), "{what}: input {i} got no gradient");
        let got = p.grad().to_vec::<f32>().unwrap();
        for j in 0..got.len() {
            let h = 1e-6 * (1.0 + x64[i][j].abs());
            let mut plus = x64.clone();
            plus[i][j] += h;
            let mut minus = x64.clone();
            minus[i][j] -= h;
            let fd = (lossf(&plus) - lossf(&minus)) / (2.0 * h);
            let g = got[j] as f64;
            assert!(
                (g - fd).abs() <= 2e-3 * (1.0 + fd.abs()),
                "{what}: d/d input {i}[{j}] gpu {g} finite difference {fd}"
            );
        }
    }
}

fn rand_input(seed: u64, shape: &[usize], lo: f32, hi: f32) -> (Vec<f32>, Vec<usize>) {
    let n = shape.iter().product();
    (uniform(&mut rng(seed), n, lo, hi), shape.to_vec())
}

fn mm64(a: &[f64], b: &[f64], (m, k, n): (usize, usize, usize), ta: bool, tb: bool) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                c[i * n + j] += av * bv;
            }
        }
    }
    c
}

#[test]
fn linear_gradients_match_finite_differences() {
    let e = gpu!();
    for (relu, (b, i, o)) in [(false, (3, 5, 4)), (true, (6, 16, 8)), (true, (2, 9, 33))] {
        let inputs = [
            rand_input(1, &[b, i], -1.0, 1.0),
            rand_input(2, &[o, i], -1.0, 1.0),
            rand_input(3, &[o], -0.5, 0.5),
        ];
        let cpu = move |x: &[Vec<f64>]| {
            let mut y = mm64(&x[0], &x[1], (b, i, o), false, true);
            for (k, v) in y.iter_mut().enumerate() {
                *v += x[2][k % o];
                if relu {
                    *v = v.max(0.0);
                }
            }
            y
        };
        let what = format!("linear relu={relu} {b}x{i}->{o}");
        check(
            e,
            &what,
            &inputs,
            |v| v[0].linear(&v[1], Some(&v[2]), relu).unwrap(),
            &cpu,
        );
    }
}

#[test]
fn matmul_gradients_match_finite_differences_in_every_layout() {
    let e = gpu!();
    let (m, k, n) = (5, 7, 3);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a_shape = if ta { [k, m] } else { [m, k] };
        let b_shape = if tb { [n, k] } else { [k, n] };
        let inputs = [
            rand_input(4, &a_shape, -1.0, 1.0),
            rand_input(5, &b_shape, -1.0, 1.0),
        ];
        let cpu = move |x: &[Vec<f64>]| mm64(&x[0], &x[1], (m, k, n), ta, tb);
        let what = format!("matmul ta={ta} tb={tb}");
        check(
            e,
            &what,
            &inputs,
            |v| v[0].matmul(&v[1], ta, tb).unwrap(),
            &cpu,
        );
    }
}

#[test]
fn unary_gradients_match_finite_differences() {
    let e = gpu!();
    for op in Unary::ALL {
        // Away from 0 for ReLU's kink; positive for log and sqrt.
        let (lo, hi) = match op {
            Unary::Log | Unary::Sqrt => (0.2, 3.0),
            _ => (0.1, 2.0),
        };
        let mut input = rand_input(6, &[4, 6], lo, hi);
        if !matches!(op, Unary::Log | Unary::Sqrt) {
            for (j, v) in input.0.iter_mut().enumerate() {
                if j % 2 == 1 {
                    *v = -*v;
                }
            }
        }
        let cpu = move |x: &[Vec<f64>]| x[0].iter().map(|&v| cpu_unary(op, v)).collect();
        check(
            e,
            &format!("{op:?}"),
            &[input],
            |v| v[0].unary(op).unwrap(),
            &cpu,
        );
    }
}

#[test]
fn binary_gradients_match_finite_differences_with_broadcasting() {
    let e = gpu!();
    let (rows, cols) = (4, 5);
    let shapes: [Vec<usize>; 4] = [vec![rows, cols], vec![cols], vec![rows, 1], vec![1]];
    for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div] {
        for bs in &shapes {
            let a = rand_input(7, &[rows, cols], -2.0, 2.0);
            let b = rand_input(8, bs, 0.5, 2.0);
            let bshape = bs.clone();
            let cpu = move |x: &[Vec<f64>]| {
                (0..rows * cols)
                    .map(|i| {
                        let bi = match bshape.as_slice() {
                            [_, c] if *c == cols => i,
                            [c] if *c == cols => i % cols,
                            [_, 1] => i / cols,
                            _ => 0,
                        };
                        let (u, v) = (x[0][i], x[1][bi]);
                        match op {
                            Binary::Add => u + v,
                            Binary::Sub => u - v,
                            Binary::Mul => u * v,
                            _ => u / v,
                        }
                    })
                    .collect()
            };
            let what = format!("{op:?} with b {bs:?}");
            check(e, &what, &[a, b], |v| v[0].binary(op, &v[1]).unwrap(), &cpu);
        }
    }
}

#[test]
fn affine_sum_and_mean_gradients_match_finite_differences() {
    let e = gpu!();
    let input = rand_input(9, &[3, 7], -1.0, 1.0);
    let cpu = |x: &[Vec<f64>]| x[0].iter().map(|v| 2.5 * v - 1.0).collect();
    check(
        e,
        "affine",
        std::slice::from_ref(&input),
        |v| v[0].affine(2.5, -1.0).unwrap(),
        &cpu,
    );
    let cpu = |x: &[Vec<f64>]| vec![x[0].iter().sum::<f64>()];
    check(
        e,
        "sum",
        std::slice::from_ref(&input),
        |v| v[0].sum().unwrap(),
        &cpu,
    );
    let cpu = |x: &[Vec<f64>]| vec![x[0].iter().sum::<f64>() / 21.0];
    check(
        e,
        "mean",
        std::slice::from_ref(&input),
        |v| v[0].mean().unwrap(),
        &cpu,
    );
    // A value used twice accumulates both gradients: d(x·x + x)/dx = 2x + 1.
    let cpu = |x: &[Vec<f64>]| x[0].iter().map(|v| v * v + v).collect();
    check(
        e,
        "reuse",
        &[input],
        |v| v[0].mul(&v[0]).unwrap().add(&v[0]).unwrap(),
        &cpu,
    );
}

#[test]
fn gradients_accumulate_until_zero_grad_and_detach_stops_them() {
    let e = gpu!();
    let lin = Linear::new(e, "l", 3, 2, 7).unwrap();
    let x = Tensor::from_slice(e, &[1.0f32, -2.0, 0.5, 0.25, 1.5, -1.0], &[2, 3]).unwrap();
    let run = || {
        let tape = Tape::new(e);
        let y = lin.forward(&tape.input(&x), false).unwrap().sum().unwrap();
        tape.backward(&y).unwrap();
    };
    run();
    let once = lin.weight.grad().to_vec::<f32>().unwrap();
    run();
    let twice = lin.weight.grad().to_vec::<f32>().unwrap();
    for (a, b) in once.iter().zip(&twice) {
        assert!(
            (2.0 * a - b).abs() < 1e-5,
            "second backward adds: {a} then {b}"
        );
    }
    for p in lin.params() {
        p.zero_grad();
    }
    run();
    assert_eq!(
        lin.weight.grad().to_vec::<f32>().unwrap(),
        once,
        "zero_grad then backward overwrites"
    );
    // Through detach no gradient reaches the parameter.
    let tape = Tape::new(e);
    let w = Param::new("w", Tensor::from_slice(e, &[2.0f32], &[1]).unwrap()).unwrap();
    let wv = tape.param(&w);
    let y = wv.detach().mul(&wv).unwrap().sum().unwrap();
    tape.backward(&y).unwrap();
    assert_eq!(
        w.grad().to_vec::<f32>().unwrap(),
        [2.0],
        "d(c·w)/dw = c with c = detach(w)"
    );
}

#[test]
fn backward_refuses_bad_losses() {
    let e = gpu!();
    let tape = Tape::new(e);
    let x = tape.input(&Tensor::from_slice(e, &[1.0f32, 2.0], &[2]).unwrap());
    assert!(
        matches!(tape.backward(&x), Err(Error::BadInput { .. })),
        "two elements"
    );
    let s = x.sum().unwrap();
    assert!(
        matches!(tape.backward(&s), Err(Error::BadInput { .. })),
        "no parameter"
    );
    let other = Tape::new(e);
    assert!(
        matches!(other.backward(&s), Err(Error::BadInput { .. })),
        "another tape"
    );
    let eval = Tape::no_grad(e);
    let p = Param::new("p", Tensor::from_slice(e, &[1.0f32], &[1]).unwrap()).unwrap();
    let y = eval.param(&p).sum().unwrap();
    assert!(
        matches!(eval.backward(&y), Err(Error::BadInput { .. })),
        "no_grad tape"
    );
}

#[test]
fn kl_warmup_ramps_linearly_to_beta() {
    let s = KlSchedule {
        beta: 2.0,
        warmup: 100,
    };
    assert_eq!(s.weight(0), 0.0);
    assert_eq!(s.weight(50), 1.0);
    assert_eq!(s.weight(100), 2.0);
    assert_eq!(s.weight(1000), 2.0);
    assert_eq!(
        KlSchedule {
            beta: 0.5,
            warmup: 0
        }
        .weight(0),
        0.5
    );
}

#[test]
fn vae_loss_op_gradients_match_finite_differences() {
    let e = gpu!();
    let (b, d) = (3, 6);
    let eps_host = uniform(&mut rng(20), b * d, -2.0, 2.0);
    let eps = Tensor::from_slice(e, &eps_host, &[b, d]).unwrap();
    let inputs = [
        rand_input(21, &[b, d], -1.5, 1.5),
        rand_input(22, &[b, d], -2.0, 1.0),
    ];
    // z = μ + exp(½ log σ²)·ε
    let eps_c = eps_host.clone();
    let cpu_z: std::rc::Rc<Cpu> = std::rc::Rc::new(move |x: &[Vec<f64>]| {
        (0..b * d)
            .map(|i| x[0][i] + (0.5 * x[1][i]).exp() * eps_c[i] as f64)
            .collect()
    });
    check(
        e,
        "reparameterize",
        &inputs,
        |v| v[0].reparameterize(&v[1], &eps).unwrap(),
        &*cpu_z,
    );
    // KL(N(μ, σ²) ‖ N(0, I)) per row
    let cpu_kl: std::rc::Rc<Cpu> = std::rc::Rc::new(move |x: &[Vec<f64>]| {
        (0..b)
            .map(|r| {
                (0..d)
                    .map(|j| {
                        let (m, lv) = (x[0][r * d + j], x[1][r * d + j]);
                        -0.5 * (1.0 + lv - m * m - lv.exp())
                    })
                    .sum()
            })
            .collect()
    });
    check(
        e,
        "kl_std_normal",
        &inputs,
        |v| v[0].kl_std_normal(&v[1]).unwrap(),
        &*cpu_kl,
    );
    // The fused pair: z and the KL together (one fused backward), z alone and the KL alone
    // (the other node gets no gradient: each falls back to its own backward).
    let (z_twin, kl_twin) = (cpu_z.clone(), cpu_kl.clone());
    let both = move |x: &[Vec<f64>]| [z_twin(x), kl_twin(x)].concat();
    check(
        e,
        "reparameterize_kl (z, KL)",
        &inputs,
        |v| {
            let (z, kl) = v[0].reparameterize_kl(&v[1], &eps).unwrap();
            Var::concat(&[&z.reshape(&[b * d]).unwrap(), &kl], 0).unwrap()
        },
        &both,
    );
    check(
        e,
        "reparameterize_kl (z only)",
        &inputs,
        |v| v[0].reparameterize_kl(&v[1], &eps).unwrap().0,
        &*cpu_z,
    );
    check(
        e,
        "reparameterize_kl (KL only)",
        &inputs,
        |v| v[0].reparameterize_kl(&v[1], &eps).unwrap().1,
        &*cpu_kl,
    );
    // The fused loss mean(a) + w·mean(b) of two per-row vectors.
    let rows = [
        rand_input(24, &[b], -3.0, 3.0),
        rand_input(25, &[b], 0.0, 2.0),
    ];
    let pair = move |x: &[Vec<f64>]| {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        vec![mean(&x[0]) + 0.7 * mean(&x[1])]
    };
    check(
        e,
        "mean_pair",
        &rows,
        |v| v[0].mean_pair(&v[1], 0.7).unwrap().0,
        &pair,
    );
    // Σ BCE-with-logits per row against a constant target in [0, 1]
    let target_host = uniform(&mut rng(23), b * d, 0.0, 1.0);
    let target = Tensor::from_slice(e, &target_host, &[b, d]).unwrap();
    let cpu = move |x: &[Vec<f64>]| {
        (0..b)
            .map(|r| {
                (0..d)
                    .map(|j| {
                        let (l, t) = (x[0][r * d + j], target_host[r * d + j] as f64);
                        l.max(0.0) - l * t + (-l.abs()).exp().ln_1p()
                    })
                    .sum()
            })
            .collect()
    };
    check(
        e,
        "bce_with_logits",
        &inputs[..1],
        |v| v[0].bce_with_logits(&target).unwrap(),
        &cpu,
    );
}

#[test]
fn gaussian_pair_kl_and_precision_merge_gradients_match_finite_differences() {
    let e = gpu!();
    let (b, d) = (3, 5);
    let inputs = [
        rand_input(31, &[b, d], -1.5, 1.5),
        rand_input(32, &[b, d], -2.0, 1.0),
        rand_input(33, &[b, d], -1.5, 1.5),
        rand_input(34, &[b, d], -1.0, 2.0),
    ];
    let at = |x: &[Vec<f64>], i: usize| (x[0][i], x[1][i], x[2][i], x[3][i]);
    // KL(N(μq, σq²) ‖ N(μp, σp²)) per row, gradients into all four.
    let cpu = move |x: &[Vec<f64>]| {
        (0..b)
            .map(|r| {
                (0..d)
                    .map(|j| {
                        let (mq, lq, mp, lp) = at(x, r * d + j);
                        0.5 * (lp - lq + ((lq.exp() + (mq - mp).powi(2)) / lp.exp()) - 1.0)
                    })
                    .sum()
            })
            .collect()
    };
    check(
        e,
        "kl_gaussians",
        &inputs,
        |v| v[0].kl_gaussians(&v[1], &v[2], &v[3]).unwrap(),
        &cpu,
    );
    // The merge's μ and log σ², joined so one loss weighs both (Sønderby et al. 2016, eq. 17–19).
    let cpu = move |x: &[Vec<f64>]| {
        let (mut mu, mut lv) = (Vec::new(), Vec::new());
        for i in 0..b * d {
            let (mq, lq, mp, lp) = at(x, i);
            let (pq, pp) = ((-lq).exp(), (-lp).exp());
            mu.push((mq * pq + mp * pp) / (pq + pp));
            lv.push(-(pq + pp).ln());
        }
        mu.chunks(d)
            .zip(lv.chunks(d))
            .flat_map(|(m, l)| [m, l].concat())
            .collect()
    };
    check(
        e,
        "precision_merge",
        &inputs,
        |v| {
            let (mu, lv) = v[0].precision_merge(&v[1], &v[2], &v[3]).unwrap();
            Var::concat(&[&mu, &lv], 1).unwrap()
        },
        &cpu,
    );
}

#[test]
fn cross_entropy_gradients_match_finite_differences() {
    let e = gpu!();
    // K = 10 (vec4 lanes cannot split a row of 10: f32 lanes) and K = 12 (vec4 lanes).
    for (n, k) in [(5, 10), (3, 12)] {
        let labels: Vec<u32> = (0..n).map(|i| ((i * 7 + 3) % k) as u32).collect();
        let lt = Tensor::from_slice(e, &labels, &[n]).unwrap();
        let cpu = move |x: &[Vec<f64>]| {
            (0..n)
                .map(|r| {
                    let row = &x[0][r * k..(r + 1) * k];
                    let m = row.iter().cloned().fold(f64::MIN, f64::max);
                    let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                    lse - row[labels[r] as usize]
                })
                .collect()
        };
        check(
            e,
            &format!("cross_entropy {n}x{k}"),
            &[rand_input(24, &[n, k], -3.0, 3.0)],
            |v| v[0].cross_entropy(&lt).unwrap(),
            &cpu,
        );
    }
}

#[test]
fn concat_and_reshape_gradients_match_finite_differences() {
    let e = gpu!();
    let inputs = [
        rand_input(30, &[3, 4], -1.0, 1.0),
        rand_input(31, &[3, 2], -1.0, 1.0),
    ];
    // [a | b] along the columns, reshaped to [2, 9], squared so the gradient depends on x.
    let cpu = |x: &[Vec<f64>]| {
        let mut y = Vec::new();
        for r in 0..3 {
            y.extend_from_slice(&x[0][r * 4..r * 4 + 4]);
            y.extend_from_slice(&x[1][r * 2..r * 2 + 2]);
        }
        y.iter().map(|v| v * v).collect()
    };
    let gpu = |v: &[Var]| {
        let c = Var::concat(&[&v[0], &v[1]], 1).unwrap();
        c.reshape(&[2, 9]).unwrap().unary(Unary::Square).unwrap()
    };
    check(e, "concat+reshape", &inputs, gpu, &cpu);
}

/// channels_last / channels_first: y[(b·H·W + p), c] = x[b, c, p] and back; the gradient is
/// the inverse permutation (checked through a product with x so it depends on the values).
/// C = 4 and C = 3 take the vec4 and scalar permutes.
#[test]
fn channel_permute_gradients_match_finite_differences() {
    let e = gpu!();
    for c in [3usize, 4] {
        let (b, h, w) = (2, 3, 5);
        let inputs = [rand_input(35 + c as u64, &[b, c, h, w], -1.0, 1.0)];
        let p = h * w;
        let cpu = move |x: &[Vec<f64>]| {
            let mut rows = vec![0.0; b * p * c];
            for bi in 0..b {
                for ci in 0..c {
                    for q in 0..p {
                        rows[(bi * p + q) * c + ci] = x[0][(bi * c + ci) * p + q];
                    }
                }
            }
            // channels_first(rows ⊙ rows) laid back out as x.
            let mut y = vec![0.0; b * c * p];
            for bi in 0..b {
                for ci in 0..c {
                    for q in 0..p {
                        let v = rows[(bi * p + q) * c + ci];
                        y[(bi * c + ci) * p + q] = v * v * (ci + 1) as f64;
                    }
                }
            }
            y
        };
        let gpu = move |v: &[Var]| {
            let rows = v[0].channels_last().unwrap();
            let scale: Vec<f32> = (0..b * p).flat_map(|_| (1..=c).map(|k| k as f32)).collect();
            let s = v[0]
                .tape()
                .input(&Tensor::from_slice(e, &scale, &[b * p, c]).unwrap());
            let sq = rows.mul(&rows).unwrap().mul(&s).unwrap();
            sq.channels_first([b, c, h, w]).unwrap()
        };
        check(e, "channels_last/first", &inputs, gpu, &cpu);
    }
}

#[test]
fn convolution_gradients_match_finite_differences() {
    use crate::conv2d::{Geo, cpu_conv2d, cpu_conv2d_backward_input};
    use latent::kernels::conv_transpose2d::ConvTranspose2dParams;
    use latent::kernels::conv2d::Conv2dParams;
    let e = gpu!();
    // Stride 2 with (H + 2p − k) divisible by it, so the transposed convolution maps back exactly.
    let g = Geo {
        b: 2,
        c: 3,
        h: 5,
        w: 5,
        cout: 4,
        kh: 3,
        kw: 3,
        p: Conv2dParams::square(2, 1, 1),
    };
    let inputs = [
        rand_input(40, &g.x_shape(), -1.0, 1.0),
        rand_input(41, &g.w_shape(), -0.5, 0.5),
        rand_input(42, &[g.cout], -0.5, 0.5),
    ];
    let gc = g;
    let cpu = move |x: &[Vec<f64>]| cpu_conv2d(&gc, &x[0], &x[1], Some(&x[2]));
    let p = g.p;
    check(
        e,
        "conv2d",
        &inputs,
        |v| v[0].conv2d(&v[1], Some(&v[2]), &p).unwrap(),
        &cpu,
    );

    // conv_transpose2d(x, w) for x shaped like the convolution's output: conv2d's input gradient.
    let inputs = [
        rand_input(43, &g.y_shape(), -1.0, 1.0),
        rand_input(44, &g.w_shape(), -0.5, 0.5),
        rand_input(45, &[g.c], -0.5, 0.5),
    ];
    let gc = g;
    let cpu = move |x: &[Vec<f64>]| {
        let mut y = cpu_conv2d_backward_input(&gc, &x[0], &x[1]);
        for (i, v) in y.iter_mut().enumerate() {
            *v += x[2][(i / (gc.h * gc.w)) % gc.c];
        }
        y
    };
    let pt = ConvTranspose2dParams::square(2, 1, 1, 0);
    check(
        e,
        "conv_transpose2d",
        &inputs,
        |v| v[0].conv_transpose2d(&v[1], Some(&v[2]), &pt).unwrap(),
        &cpu,
    );
}

#[test]
fn batchnorm_gradients_match_finite_differences() {
    batchnorm_gradients_check(false, 50);
}

/// The batch norm fused with its ReLU against relu(twin), by finite differences; x centred so
/// that about half the outputs are cut, none within the differences' step of the kink.
#[test]
fn batchnorm_relu_gradients_match_finite_differences() {
    batchnorm_gradients_check(true, 53);
}

/// The training batch norm (followed by a ReLU when `relu`) against the twin, by finite
/// differences, on inputs drawn from `seed`.
fn batchnorm_gradients_check(relu: bool, seed: u64) {
    use crate::batchnorm::cpu_train;
    use latent::kernels::batchnorm::BatchNormConfig;
    let e = gpu!();
    let shape = [3usize, 2, 2, 3];
    let inputs = [
        rand_input(seed, &shape, -2.0, 2.0),
        rand_input(seed + 1, &[2], 0.5, 1.5),
        rand_input(seed + 2, &[2], -0.5, 0.5),
    ];
    let cpu = move |x: &[Vec<f64>]| {
        let y = cpu_train(&x[0], &shape, &x[1], &x[2], 1e-5).0;
        match relu {
            true => y.into_iter().map(|v| v.max(0.0)).collect(),
            false => y,
        }
    };
    let (rm, rv) = (
        Tensor::zeros(e, &[2], latent::DType::F32).unwrap(),
        Tensor::full(e, &[2], 1.0).unwrap(),
    );
    let cfg = BatchNormConfig {
        eps: 1e-5,
        momentum: 0.1,
    };
    let forward = |v: &[Var]| match relu {
        true => v[0].batchnorm_relu_train(&v[1], &v[2], &rm, &rv, &cfg),
        false => v[0].batchnorm_train(&v[1], &v[2], &rm, &rv, &cfg),
    };
    let what = if relu { "batchnorm_relu" } else { "batchnorm" };
    check(e, what, &inputs, |v| forward(v).unwrap(), &cpu);
}

/// Evaluation mode: the running statistics are constants, so y is affine in x per channel.
/// Checked with x, γ and β all trainable, with x alone (a frozen feature network inside a
/// perceptual loss: γ, β constants) and with γ, β alone (x a constant), on `[B, C, H, W]`
/// with H·W = 6 (vec4 lanes over segments that straddle units) and 5 (f32 lanes), and `[B, F]`.
#[test]
fn batchnorm_eval_gradients_match_finite_differences() {
    use crate::batchnorm::cpu_normalize;
    let e = gpu!();
    for (i, shape) in [vec![3, 2, 2, 3], vec![2, 3, 1, 5], vec![4, 6]]
        .into_iter()
        .enumerate()
    {
        let c = shape[1];
        let seed = 80 + 10 * i as u64;
        let x = rand_input(seed, &shape, -2.0, 2.0);
        let (gamma, beta) = (
            rand_input(seed + 1, &[c], 0.5, 1.5),
            rand_input(seed + 2, &[c], -0.5, 0.5),
        );
        let (mean, var) = (
            rand_input(seed + 3, &[c], -0.5, 0.5).0,
            rand_input(seed + 4, &[c], 0.5, 2.0).0,
        );
        let (rm, rv) = (
            Tensor::from_slice(e, &mean, &[c]).unwrap(),
            Tensor::from_slice(e, &var, &[c]).unwrap(),
        );
        let stats = [mean, var].map(|v| v.iter().map(|&v| v as f64).collect::<Vec<f64>>());
        let consts = [&gamma.0, &beta.0].map(|v| v.iter().map(|&v| v as f64).collect::<Vec<_>>());
        let (s, st) = (shape.clone(), stats.clone());
        let all =
            move |x: &[Vec<f64>]| cpu_normalize(&x[0], &s, [&x[1], &x[2], &st[0], &st[1]], 1e-5);
        let what = format!("batchnorm_eval {shape:?}");
        let inputs = [x.clone(), gamma.clone(), beta.clone()];
        let bn = |v: &[Var], g: &Var, b: &Var| v[0].batchnorm_eval(g, b, &rm, &rv, 1e-5).unwrap();
        check(e, &what, &inputs, |v| bn(v, &v[1], &v[2]), &all);

        let (s, st, k) = (shape.clone(), stats.clone(), consts.clone());
        let x_only =
            move |x: &[Vec<f64>]| cpu_normalize(&x[0], &s, [&k[0], &k[1], &st[0], &st[1]], 1e-5);
        let constant = |v: &Var, (d, sh): &(Vec<f32>, Vec<usize>)| {
            v.tape().input(&Tensor::from_slice(e, d, sh).unwrap())
        };
        let frozen = |v: &[Var]| bn(v, &constant(&v[0], &gamma), &constant(&v[0], &beta));
        check(
            e,
            &format!("{what} dx only"),
            std::slice::from_ref(&x),
            frozen,
            &x_only,
        );

        let (s, x64) = (
            shape.clone(),
            x.0.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        );
        let params_only = move |p: &[Vec<f64>]| {
            cpu_normalize(&x64, &s, [&p[0], &p[1], &stats[0], &stats[1]], 1e-5)
        };
        let trainable = |v: &[Var]| {
            let xv = constant(&v[0], &x);
            xv.batchnorm_eval(&v[0], &v[1], &rm, &rv, 1e-5).unwrap()
        };
        let params = [gamma, beta];
        check(
            e,
            &format!("{what} dγ, dβ only"),
            &params,
            trainable,
            &params_only,
        );
    }
}

/// A frozen network in evaluation mode inside a loss (the perceptual loss of DFC-VAE): the
/// nn::BatchNorm layer, set to eval, passes the input gradient through on a gradient tape.
#[test]
fn batch_norm_layer_in_eval_mode_passes_the_input_gradient() {
    use latent::nn::BatchNorm;
    let e = gpu!();
    let layer = BatchNorm::new(e, "bn", 3).unwrap();
    layer.set_training(false);
    // Running statistics (0, 1) and γ = 1, β = 0: y = x/sqrt(1 + eps), dy/dx = 1/sqrt(1 + eps).
    let x = Param::new("x", Tensor::full(e, &[2, 3, 2, 2], 0.5).unwrap()).unwrap();
    let tape = Tape::new(e);
    let y = layer.forward(&tape.param(&x)).unwrap();
    tape.backward(&y.sum().unwrap()).unwrap();
    let want = (1.0 / (1.0f64 + 1e-5).sqrt()) as f32;
    for g in x.grad().to_vec::<f32>().unwrap() {
        assert!((g - want).abs() <= 1e-6, "dx {g}, want {want}");
    }
    // γ and β are trainable parameters of the layer: 8 values per channel (B·H·W = 2·2·2), so
    // dγ = Σ x̂ = 8·0.5·want and dβ = Σ 1 = 8 (exact).
    let dg = layer.gamma.grad().to_vec::<f32>().unwrap();
    let db = layer.beta.grad().to_vec::<f32>().unwrap();
    for (g, b) in dg.iter().zip(&db) {
        assert!((g - 8.0 * 0.5 * want).abs() <= 1e-5, "dγ {g}");
        assert_eq!(*b, 8.0, "dβ");
    }
}

/// Row-wise log-softmax and log-sum-exp: rows of 1, 7 (f32), 12, a rank-3 input, a rank-1
/// input (log-sum-exp to `[1]`) and a row of 4,097 (past one 4,096-element piece: row sums
/// and statistics from reduce.wgsl instead of the fused pass).
#[test]
fn log_softmax_and_logsumexp_gradients_match_finite_differences() {
    let e = gpu!();
    for (i, shape) in [
        vec![3, 1],
        vec![4, 7],
        vec![2, 3, 12],
        vec![9],
        vec![1, 4097],
    ]
    .into_iter()
    .enumerate()
    {
        let cols = *shape.last().unwrap();
        let input = rand_input(100 + i as u64, &shape, -4.0, 4.0);
        // The twin of the forward in f64 (the kernel twins take f32 rows).
        let lsm = move |x: &[Vec<f64>]| -> Vec<f64> {
            x[0].chunks(cols)
                .flat_map(|row| {
                    let m = row.iter().cloned().fold(f64::MIN, f64::max);
                    let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                    row.iter().map(move |v| v - lse).collect::<Vec<_>>()
                })
                .collect()
        };
        let what = format!("log_softmax {shape:?}");
        check(
            e,
            &what,
            std::slice::from_ref(&input),
            |v| v[0].log_softmax().unwrap(),
            &lsm,
        );
        let lse = move |x: &[Vec<f64>]| -> Vec<f64> {
            lsm(x)
                .iter()
                .zip(&x[0])
                .step_by(cols)
                .map(|(y, x)| x - y)
                .collect()
        };
        let what = format!("logsumexp {shape:?}");
        check(e, &what, &[input], |v| v[0].logsumexp().unwrap(), &lse);
    }
}

/// BCE with logits against soft targets on the tape: the target (e.g. a decoder's output)
/// gets −logit·w; both inputs trainable, and the target alone (logits constant). Rows of 5 (f32
/// lanes) and 8 (vec4 lanes).
#[test]
fn bce_with_logits_soft_target_gradients_match_finite_differences() {
    let e = gpu!();
    for (i, [b, d]) in [[3usize, 5], [2, 8]].into_iter().enumerate() {
        let seed = 120 + 10 * i as u64;
        let logits = rand_input(seed, &[b, d], -3.0, 3.0);
        let target = rand_input(seed + 1, &[b, d], 0.0, 1.0);
        let bce = move |l: &[f64], t: &[f64]| -> Vec<f64> {
            (0..b)
                .map(|r| {
                    (0..d)
                        .map(|j| {
                            let (l, t) = (l[r * d + j], t[r * d + j]);
                            l.max(0.0) - l * t + (-l.abs()).exp().ln_1p()
                        })
                        .sum()
                })
                .collect()
        };
        let both = move |x: &[Vec<f64>]| bce(&x[0], &x[1]);
        let what = format!("bce_with_logits_soft [{b}, {d}]");
        let inputs = [logits.clone(), target.clone()];
        check(
            e,
            &what,
            &inputs,
            |v| v[0].bce_with_logits_soft(&v[1]).unwrap(),
            &both,
        );
        let l64: Vec<f64> = logits.0.iter().map(|&v| v as f64).collect();
        let target_only = move |x: &[Vec<f64>]| bce(&l64, &x[0]);
        let gpu = |v: &[Var]| {
            let l = v[0]
                .tape()
                .input(&Tensor::from_slice(e, &logits.0, &[b, d]).unwrap());
            l.bce_with_logits_soft(&v[0]).unwrap()
        };
        check(
            e,
            &format!("{what} target only"),
            &[target],
            gpu,
            &target_only,
        );
    }
}

/// The tape's convolution backward keeps forward intermediates (columns of x, rows of x) and
/// computes only the gradients wanted: with the weight frozen it still gives dx, with the input
/// constant it still gives dw, each equal to the stand-alone kernels (checked against the CPU).
#[test]
fn convolution_gradients_with_a_frozen_operand_match_the_kernels() {
    use crate::conv2d::{input_grad, weight_grad};
    use latent::kernels::conv_transpose2d::ConvTranspose2dParams;
    use latent::kernels::conv2d::{Conv2dParams, TapSource};
    let e = gpu!();
    let p = Conv2dParams::square(2, 1, 1);
    let pt = ConvTranspose2dParams::square(2, 1, 1, 0);
    let (x, _) = rand_input(60, &[2, 8, 6, 6], -1.0, 1.0);
    let (w, _) = rand_input(61, &[4, 8, 4, 4], -0.5, 0.5);
    let up = |v: &[f32], s: &[usize]| Tensor::from_slice(e, v, s).unwrap();
    let close = |what: &str, a: &Tensor, b: &Tensor| {
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        for (i, (u, v)) in a.iter().zip(&b).enumerate() {
            assert!(
                (u - v).abs() <= 1e-5 * (1.0 + v.abs()),
                "{what}[{i}]: {u} vs {v}"
            );
        }
    };
    for transposed in [false, true] {
        // conv2d: x [2, 8, 6, 6] -> [2, 4, 3, 3]; conv-transpose: x [2, 4, 3, 3] -> [2, 8, 6, 6].
        let x_shape: &[usize] = if transposed {
            &[2, 4, 3, 3]
        } else {
            &[2, 8, 6, 6]
        };
        let xt = up(&x[..x_shape.iter().product()], x_shape);
        let wt = up(&w, &[4, 8, 4, 4]);
        for frozen_weight in [true, false] {
            let tape = Tape::new(e);
            let param = Param::new(
                "p",
                if frozen_weight {
                    xt.clone()
                } else {
                    wt.clone()
                },
            )
            .unwrap();
            let (xv, wv) = match frozen_weight {
                true => (tape.param(&param), tape.input(&wt)),
                false => (tape.input(&xt), tape.param(&param)),
            };
            let y = match transposed {
                true => xv.conv_transpose2d(&wv, None, &pt).unwrap(),
                false => xv.conv2d(&wv, None, &p).unwrap(),
            };
            let gy = y.value().clone();
            tape.backward(
                &y.mul(&tape.input(&gy))
                    .unwrap()
                    .sum()
                    .unwrap()
                    .affine(0.5, 0.0)
                    .unwrap(),
            )
            .unwrap();
            // d(½ Σ y ⊙ y_const)/dy = ½ y_const.
            let dy = latent::kernels::elementwise::affine(&gy, 0.5, 0.0).unwrap();
            let want = match (transposed, frozen_weight) {
                (false, true) => input_grad(TapSource::Dense(p), &dy, &wt, x_shape),
                (false, false) => weight_grad(TapSource::Dense(p), &dy, &xt, wt.shape(), None),
                (true, true) => input_grad(TapSource::Transposed(pt), &dy, &wt, x_shape),
                (true, false) => weight_grad(TapSource::Transposed(pt), &dy, &xt, wt.shape(), None),
            }
            .unwrap();
            let what = format!("transposed {transposed}, frozen weight {frozen_weight}");
            close(&what, param.grad(), &want);
        }
    }
}

#[test]
fn masked_conv_slice_and_channels_last_gradients_match_finite_differences() {
    use crate::masked_conv::{Kind, cpu_masked_conv, geo};
    use latent::kernels::masked_conv::Mask;
    let e = gpu!();
    let kind = Kind::Masked(3, Mask::A);
    let g = geo(kind, [2, 3, 4, 5, 4]);
    let taps = kind.taps();
    let inputs = [
        rand_input(60, &g.x_shape(), -1.0, 1.0),
        rand_input(61, &[g.cout, taps.len(), g.c], -0.5, 0.5),
        rand_input(62, &[g.cout], -0.5, 0.5),
    ];
    let cpu = move |x: &[Vec<f64>]| cpu_masked_conv(kind, &g, &x[0], &x[1], Some(&x[2]));
    check(
        e,
        "masked_conv",
        &inputs,
        |v| v[0].masked_conv(&v[1], Some(&v[2]), &taps).unwrap(),
        &cpu,
    );

    // Channels 1..3 of [2, 4, 3, 5], squared, then one row per pixel: [2·3·5, 2].
    let (b, c, hw) = (2, 4, 15);
    let cpu = move |x: &[Vec<f64>]| {
        let mut y = Vec::new();
        for n in 0..b {
            for q in 0..hw {
                for ch in 1..3 {
                    y.push(x[0][(n * c + ch) * hw + q].powi(2));
                }
            }
        }
        y
    };
    let gpu = |v: &[Var]| {
        let s = v[0].slice(1, 1..3).unwrap().unary(Unary::Square).unwrap();
        s.channels_last().unwrap()
    };
    check(
        e,
        "slice+channels_last",
        &[rand_input(63, &[b, c, 3, 5], -1.0, 1.0)],
        gpu,
        &cpu,
    );
}

#[test]
fn gated_gradients_match_finite_differences_with_a_per_channel_condition() {
    use crate::gated::{Cond, cpu_gated};
    let e = gpu!();
    let inputs = [
        rand_input(70, &[2, 6, 2, 3], -2.0, 2.0),
        rand_input(71, &[2, 6], -1.0, 1.0),
    ];
    let cpu = |x: &[Vec<f64>]| cpu_gated(&x[0], &x[1], Cond::PerChannel, (2, 3, 6));
    check(
        e,
        "gated",
        &inputs,
        |v| v[0].gated(Some(&v[1])).unwrap(),
        &cpu,
    );
}
