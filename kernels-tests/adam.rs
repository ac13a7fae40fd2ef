//! CPU twin of `shaders/adam.wgsl` (torch.optim Adam, AdamW, SGD in f64) and GPU-vs-CPU checks
//! over several steps of random gradients; tolerances are stated where each comparison is made.

use crate::{assert_close, awkward, error_kind, gpu, rng, uniform};
use latent::kernels::adam::{AdamConfig, SgdConfig, adam_step, sgd_step};
use latent::models::conv_vae::ConvVae;
use latent::models::vae::{Vae, VaeConfig};
use latent::nn::Module;
use latent::optim::{Adam, Optimizer, Sgd};
use latent::tape::{Param, Tape, Var};
use latent::{DType, Engine, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

// ---- CPU twin -------------------------------------------------------------------------------

/// One Adam / AdamW step as the torch.optim docs write it, in f64 (`m`, `v` start at zero).
pub fn cpu_adam(w: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: u64, c: &AdamConfig) {
    let t = t as i32;
    for i in 0..w.len() {
        let mut g = g[i];
        if c.decoupled {
            w[i] -= c.lr * c.weight_decay * w[i];
        } else {
            g += c.weight_decay * w[i];
        }
        m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
        let m_hat = m[i] / (1.0 - c.beta1.powi(t));
        let v_hat = v[i] / (1.0 - c.beta2.powi(t));
        w[i] -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
    }
}

/// One torch.optim.SGD step (dampening 0) in f64; `buf` starts at zero and is unused without
/// momentum.
pub fn cpu_sgd(w: &mut [f64], g: &[f64], buf: &mut [f64], c: &SgdConfig) {
    for i in 0..w.len() {
        let g = g[i] + c.weight_decay * w[i];
        let d = if c.momentum > 0.0 {
            buf[i] = c.momentum * buf[i] + g;
            if c.nesterov {
                g + c.momentum * buf[i]
            } else {
                buf[i]
            }
        } else {
            g
        };
        w[i] -= c.lr * d;
    }
}

// ---- helpers --------------------------------------------------------------------------------

fn narrow(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

fn upload(e: &Engine, x: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(e, &narrow(x), shape).unwrap()
}

/// A random shape of 1 to 3 awkward axes and weights for it, uniform in [−2, 2) (f32 values, so
/// the GPU and the twin start from the same numbers).
fn random_problem(r: &mut StdRng) -> (Vec<usize>, Vec<f64>) {
    let ndim = r.random_range(1..=3);
    let shape: Vec<usize> = (0..ndim)
        .map(|_| awkward(r, [600, 40, 9][ndim - 1]))
        .collect();
    let n = shape.iter().product();
    let w = uniform(r, n, -2.0, 2.0)
        .into_iter()
        .map(f64::from)
        .collect();
    (shape, w)
}

/// Gradients uniform in [−1, 1), exactly zero one time in ten: at step 1 that leaves m = v = 0
/// and only ε keeps the update finite.
fn random_grad(r: &mut StdRng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| match r.random_range(0..10) {
            0 => 0.0,
            _ => r.random_range(-1.0f32..1.0) as f64,
        })
        .collect()
}

/// Adam with PyTorch's defaults, Adam with L2 decay, AdamW, and AdamW with other betas.
fn configs() -> [AdamConfig; 4] {
    [
        AdamConfig::default(),
        AdamConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            ..AdamConfig::default()
        },
        AdamConfig::adamw(),
        AdamConfig {
            lr: 3e-2,
            beta1: 0.5,
            beta2: 0.9,
            eps: 1e-6,
            ..AdamConfig::adamw()
        },
    ]
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn adam_and_adamw_match_a_float64_twin_over_several_steps_on_random_shapes() {
    let e = gpu!();
    let mut r = rng(21);
    for (k, cfg) in configs().iter().enumerate() {
        for case in 0..6 {
            // Cases 4 and 5 pin both launch paths: a length that is a multiple of 4 (vec4
            // entry) and one that is not (scalar entry).
            let (shape, mut w) = match case {
                4 => (
                    vec![12, 20],
                    uniform(&mut r, 240, -2.0, 2.0)
                        .into_iter()
                        .map(f64::from)
                        .collect(),
                ),
                5 => (
                    vec![7, 3],
                    uniform(&mut r, 21, -2.0, 2.0)
                        .into_iter()
                        .map(f64::from)
                        .collect(),
                ),
                _ => random_problem(&mut r),
            };
            let n = w.len();
            let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
            let (tw, tm, tv) = (
                upload(e, &w, &shape),
                upload(e, &m, &shape),
                upload(e, &v, &shape),
            );
            // Two cases start late, where the bias corrections are close to 1.
            let first = if case < 2 { 1 } else { 1000 };
            for t in first..first + 6 {
                let g = random_grad(&mut r, n);
                adam_step(&tw, &upload(e, &g, &shape), &tm, &tv, t, cfg).unwrap();
                cpu_adam(&mut w, &g, &mut m, &mut v, t, cfg);
            }
            // f32 state vs an f64 twin: each step adds a few ULP (seen: ≤ 3 ULP in w, ≤ 1e-8
            // in m); m cancels among O(1) gradients, so its bound is partly absolute, v sums
            // positive terms, so its bound is relative. About 10× headroom everywhere.
            let check = |name: &str, t: &Tensor, cpu: &[f64], atol, rtol| {
                let what = format!("{name} config {k} {shape:?}");
                assert_close(&what, &t.to_vec().unwrap(), &narrow(cpu), atol, rtol);
            };
            check("m", &tm, &m, 1e-7, 1e-6);
            check("v", &tv, &v, 1e-12, 1e-6);
            check("w", &tw, &w, 1e-6, 1e-6);
        }
    }
}

/// The eight-float entry (64-bit words; length % 8 == 0) and the four-float one (length % 4)
/// and the scalar one (any length) give each element the same update, bit for bit: the same
/// weights with 4 or 1 extra elements take the narrower entry, over five steps of every config.
#[test]
fn adam_entries_of_every_width_agree_bit_for_bit() {
    let e = gpu!();
    if !e.features().contains(wgpu::Features::SHADER_INT64) {
        eprintln!("no 64-bit integers on this device: the 8-float entry is not exercised here");
    }
    let mut r = rng(77);
    for (c, cfg) in configs().iter().enumerate() {
        let n = 1000;
        let w = uniform(&mut r, n + 5, -2.0, 2.0);
        let run = |len: usize| -> Vec<u32> {
            let w = Tensor::from_slice(e, &w[..len], &[len]).unwrap();
            let m = Tensor::zeros(e, &[len], DType::F32).unwrap();
            let v = Tensor::zeros(e, &[len], DType::F32).unwrap();
            for t in 1..=5 {
                let g = random_grad(&mut rng(500 + t), n + 5);
                let g: Vec<f32> = g[..len].iter().map(|&x| x as f32).collect();
                let g = Tensor::from_slice(e, &g, &[len]).unwrap();
                adam_step(&w, &g, &m, &v, t, cfg).unwrap();
            }
            let out = [&w, &m, &v].map(|t| t.to_vec::<f32>().unwrap()[..n].to_vec());
            out.concat().iter().map(|x| x.to_bits()).collect()
        };
        let (eight, four, one) = (run(n), run(n + 4), run(n + 5));
        assert_eq!(eight, four, "config {c}: 8-float vs 4-float entry");
        assert_eq!(eight, one, "config {c}: 8-float vs scalar entry");
    }
}

#[test]
fn sgd_plain_momentum_and_nesterov_match_a_float64_twin_over_several_steps() {
    let e = gpu!();
    let mut r = rng(22);
    let configs = [
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.05,
            weight_decay: 0.01,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-3,
            nesterov: true,
        },
    ];
    for (k, cfg) in configs.iter().enumerate() {
        for _ in 0..4 {
            let (shape, mut w) = random_problem(&mut r);
            let n = w.len();
            let mut buf = vec![0.0; n];
            let (tw, tb) = (upload(e, &w, &shape), upload(e, &buf, &shape));
            let tb = (cfg.momentum > 0.0).then_some(&tb);
            for _ in 0..6 {
                let g = random_grad(&mut r, n);
                sgd_step(&tw, &upload(e, &g, &shape), tb, cfg).unwrap();
                cpu_sgd(&mut w, &g, &mut buf, cfg);
            }
            // A few f32 roundings of O(1) terms per step, and buf grows towards 10·g with
            // μ = 0.9 (seen: ≤ 2.3e-7 in buf), so about 10× headroom.
            let what = format!("config {k} {shape:?}");
            let got = tw.to_vec().unwrap();
            assert_close(&format!("w {what}"), &got, &narrow(&w), 2e-6, 1e-6);
            if let Some(tb) = tb {
                let got = tb.to_vec().unwrap();
                assert_close(&format!("buf {what}"), &got, &narrow(&buf), 2e-6, 1e-6);
            }
        }
    }
}

#[test]
fn adam_first_step_moves_each_weight_by_lr_against_the_gradient_sign() {
    let e = gpu!();
    // With zero moments the bias corrections make m̂ = g and v̂ = g², so Δw = −lr·g/(|g| + ε).
    let g: Vec<f32> = (0..300).map(|i| (i as f32 - 150.5) / 100.0).collect();
    let zeros = || Tensor::zeros(e, &[300], DType::F32).unwrap();
    let (w, m, v) = (zeros(), zeros(), zeros());
    let cfg = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    };
    let tg = Tensor::from_slice(e, &g, &[300]).unwrap();
    adam_step(&w, &tg, &m, &v, 1, &cfg).unwrap();
    let want: Vec<f32> = g.iter().map(|g| -0.01 * g.signum()).collect();
    // |g| ≥ 0.005 makes ε/|g| ≤ 2e-6; the rest is f32 rounding of the bias corrections.
    assert_close("first step", &w.to_vec().unwrap(), &want, 0.0, 5e-6);
}

#[test]
fn weight_decay_is_decoupled_in_adamw_and_added_to_the_gradient_in_adam() {
    let e = gpu!();
    let w0 = [-2.0f32, -0.5, 0.25, 3.0];
    let zero = vec![0.0f32; 4];
    let run = |cfg: AdamConfig| {
        let w = Tensor::from_slice(e, &w0, &[4]).unwrap();
        let m = Tensor::zeros(e, &[4], DType::F32).unwrap();
        let v = Tensor::zeros(e, &[4], DType::F32).unwrap();
        let g = Tensor::from_slice(e, &zero, &[4]).unwrap();
        adam_step(&w, &g, &m, &v, 1, &cfg).unwrap();
        (w.to_vec::<f32>().unwrap(), m.to_vec::<f32>().unwrap())
    };
    // AdamW with a zero gradient: the moments stay zero and the weights only shrink.
    let cfg = AdamConfig {
        lr: 0.1,
        weight_decay: 0.5,
        ..AdamConfig::adamw()
    };
    let (w, m) = run(cfg);
    assert_eq!(m, zero);
    let want: Vec<f32> = w0.iter().map(|w| w * 0.95).collect();
    assert_close("AdamW shrink", &w, &want, 0.0, 1e-7);
    // Adam with L2: the decay is a gradient wd·w, so the first step is −lr·sign(w).
    let (w, m) = run(AdamConfig {
        decoupled: false,
        ..cfg
    });
    let want_m: Vec<f32> = w0.iter().map(|w| 0.1 * 0.5 * w).collect();
    assert_close("Adam L2 moment", &m, &want_m, 0.0, 1e-6);
    let want: Vec<f32> = w0.iter().map(|w| w - 0.1 * w.signum()).collect();
    assert_close("Adam L2 step", &w, &want, 1e-6, 1e-6);
}

#[test]
fn optimizers_refuse_bad_input_with_typed_errors() {
    let e = gpu!();
    let f = |s: &[usize]| Tensor::zeros(e, s, DType::F32).unwrap();
    let (w, g, m, v) = (f(&[3, 4]), f(&[3, 4]), f(&[3, 4]), f(&[3, 4]));
    let gu = Tensor::zeros(e, &[3, 4], DType::U32).unwrap();
    let adam =
        |g: &Tensor, m: &Tensor, v: &Tensor, t, cfg| error_kind(adam_step(&w, g, m, v, t, &cfg));
    let ok = AdamConfig::default();
    assert_eq!(adam(&g, &m, &v, 0, ok), "BadInput", "t counts from 1");
    assert_eq!(adam(&f(&[4, 3]), &m, &v, 1, ok), "ShapeMismatch");
    assert_eq!(adam(&g, &m, &f(&[12]), 1, ok), "ShapeMismatch");
    assert_eq!(adam(&gu, &m, &v, 1, ok), "DTypeMismatch");
    assert_eq!(adam(&g, &m, &m, 1, ok), "Binding", "m and v share a buffer");
    assert_eq!(
        adam(&w, &m, &v, 1, ok),
        "Binding",
        "the gradient is the parameter"
    );
    for cfg in [
        AdamConfig { beta1: 1.0, ..ok },
        AdamConfig { beta2: -0.1, ..ok },
        AdamConfig { lr: -1e-3, ..ok },
        AdamConfig {
            eps: f64::NAN,
            ..ok
        },
        AdamConfig {
            weight_decay: -0.1,
            ..ok
        },
    ] {
        assert_eq!(adam(&g, &m, &v, 1, cfg), "BadInput", "{cfg:?}");
    }
    let sgd = |buf, cfg| error_kind(sgd_step(&w, &g, buf, &cfg));
    let ok = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..SgdConfig::default()
    };
    let plain = SgdConfig {
        momentum: 0.0,
        ..ok
    };
    assert_eq!(sgd(None, ok), "BadInput", "momentum without a buffer");
    assert_eq!(
        sgd(Some(&m), plain),
        "BadInput",
        "a buffer without momentum"
    );
    assert_eq!(
        sgd(
            None,
            SgdConfig {
                nesterov: true,
                ..plain
            }
        ),
        "BadInput"
    );
    assert_eq!(sgd(Some(&f(&[2])), ok), "ShapeMismatch");
}

// ---- one launch per group -------------------------------------------------------------------

/// Sizes that leave padding after every slice of an arena (1, 3, 257) beside one that fills a
/// whole number of vec4s (1000): the group's one vec4 launch must give what each tensor's own
/// launch gives (scalar or vec4).
const SHAPES: [&[usize]; 5] = [&[1], &[3], &[257], &[10, 100], &[2, 3]];

/// Parameters of [`SHAPES`], uniform in [−2, 2).
fn params_of(e: &Engine, r: &mut StdRng) -> Vec<Param> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let w = uniform(r, s.iter().product(), -2.0, 2.0);
            Param::new(format!("p{i}"), Tensor::from_slice(e, &w, s).unwrap()).unwrap()
        })
        .collect()
}

/// Writes `grads[i]` into parameter i's gradient by a backward of `Σ_i sum(p_i ⊙ c_i)` (exact:
/// d/dp of sum(p ⊙ c) is 1·c), skipping the parameters where `grads` holds `None`.
fn backward(e: &Engine, params: &[Param], grads: &[Option<Vec<f32>>]) {
    let tape = Tape::new(e);
    let mut loss: Option<Var> = None;
    for (p, g) in params.iter().zip(grads) {
        let Some(g) = g else { continue };
        let c = tape.input(&Tensor::from_slice(e, g, p.value().shape()).unwrap());
        let term = tape.param(p).mul(&c).unwrap().sum().unwrap();
        loss = Some(match loss {
            Some(l) => l.add(&term).unwrap(),
            None => term,
        });
    }
    tape.backward(&loss.expect("one gradient at least"))
        .unwrap();
}

/// Gradients for [`SHAPES`] at step `t`: parameter 1 gets none at step 3 (the optimizer counts
/// it as zero), the rest uniform in [−1, 1).
fn grads_at(r: &mut StdRng, t: u64) -> Vec<Option<Vec<f32>>> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| (t != 3 || i != 1).then(|| uniform(r, s.iter().product(), -1.0, 1.0)))
        .collect()
}

/// A copy of `p`'s value in a tensor of its own.
fn copy(e: &Engine, p: &Param) -> Tensor {
    let w = p.value().to_vec::<f32>().unwrap();
    Tensor::from_slice(e, &w, p.value().shape()).unwrap()
}

/// Zeros of `p`'s shape.
fn zeros(e: &Engine, p: &Param) -> Tensor {
    Tensor::zeros(e, p.value().shape(), DType::F32).unwrap()
}

/// The gradient [`backward`] writes for `g`: `g`, or zeros where there is none.
fn grad_tensor(e: &Engine, g: &Option<Vec<f32>>, shape: &[usize]) -> Tensor {
    match g {
        Some(g) => Tensor::from_slice(e, g, shape).unwrap(),
        None => Tensor::zeros(e, shape, DType::F32).unwrap(),
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// A cosine schedule over 4 steps: step t takes the kernel at lr·½(1 + cos(π(t − 1)/4)), bit
/// for bit, and the factor is 1 at the first step, ½ halfway, 0 from the step after the last.
#[test]
fn a_cosine_schedule_steps_at_the_scheduled_rate() {
    use latent::optim::LrSchedule;
    let cosine = LrSchedule::Cosine { steps: 4 };
    assert_eq!(cosine.factor(1), 1.0);
    assert!((cosine.factor(3) - 0.5).abs() < 1e-15);
    assert_eq!(cosine.factor(5), 0.0);
    assert_eq!(cosine.factor(50), 0.0);
    assert_eq!(LrSchedule::Constant.factor(7), 1.0);
    let e = gpu!();
    let mut r = rng(31);
    let cfg = AdamConfig::default();
    let params = params_of(e, &mut r);
    let own: Vec<[Tensor; 3]> = params
        .iter()
        .map(|p| [copy(e, p), zeros(e, p), zeros(e, p)])
        .collect();
    let mut adam = Adam::new(params.clone(), cfg)
        .unwrap()
        .with_schedule(cosine);
    for t in 1..=5 {
        let grads = grads_at(&mut r, t);
        backward(e, &params, &grads);
        adam.step().unwrap();
        let at = AdamConfig {
            lr: cfg.lr * cosine.factor(t),
            ..cfg
        };
        for ([w, m, v], (g, s)) in own.iter().zip(grads.iter().zip(SHAPES)) {
            adam_step(w, &grad_tensor(e, g, s), m, v, t, &at).unwrap();
        }
    }
    for (p, [w, _, _]) in params.iter().zip(&own) {
        assert_eq!(bits(p.value()), bits(w), "{:?}", p.value().shape());
    }
}

#[test]
fn one_adam_launch_per_group_matches_the_per_tensor_kernel_bit_for_bit() {
    let e = gpu!();
    let mut r = rng(23);
    for (k, cfg) in configs().iter().enumerate() {
        let params = params_of(e, &mut r);
        // The reference: each tensor on its own, stepped by its own launch.
        let own: Vec<[Tensor; 3]> = params
            .iter()
            .map(|p| [copy(e, p), zeros(e, p), zeros(e, p)])
            .collect();
        // A clone taken before the optimizer moves the parameters follows them.
        let early = params[2].value().clone();
        let mut adam = Adam::new(params.clone(), *cfg).unwrap();
        assert_eq!(adam.launches(), 1, "config {k}");
        assert!(
            params
                .iter()
                .all(|p| p.value().same_buffer(params[0].value()))
        );
        for t in 1..=5 {
            let grads = grads_at(&mut r, t);
            backward(e, &params, &grads);
            adam.step().unwrap();
            for ([w, m, v], (g, s)) in own.iter().zip(grads.iter().zip(SHAPES)) {
                let g = grad_tensor(e, g, s);
                adam_step(w, &g, m, v, t, cfg).unwrap();
            }
        }
        let state = adam.state();
        for (i, (p, [w, m, v])) in params.iter().zip(&own).enumerate() {
            let what = format!("config {k} {:?}", p.value().shape());
            assert_eq!(bits(p.value()), bits(w), "w {what}");
            assert_eq!(state[2 * i].0, format!("adam.m.p{i}"));
            assert_eq!(bits(&state[2 * i].1), bits(m), "m {what}");
            assert_eq!(bits(&state[2 * i + 1].1), bits(v), "v {what}");
        }
        assert_eq!(
            bits(&early),
            bits(params[2].value()),
            "a clone before the move"
        );
    }
}

#[test]
fn one_sgd_launch_per_group_matches_the_per_tensor_kernel_bit_for_bit() {
    let e = gpu!();
    let mut r = rng(24);
    let momentum = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-3,
        nesterov: true,
    };
    for cfg in [
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
        momentum,
    ] {
        let params = params_of(e, &mut r);
        let own: Vec<[Tensor; 2]> = params.iter().map(|p| [copy(e, p), zeros(e, p)]).collect();
        let mut sgd = Sgd::new(params.clone(), cfg).unwrap();
        for t in 1..=4 {
            let grads = grads_at(&mut r, t);
            backward(e, &params, &grads);
            sgd.step().unwrap();
            for ([w, buf], (g, s)) in own.iter().zip(grads.iter().zip(SHAPES)) {
                let g = grad_tensor(e, g, s);
                let buf = (cfg.momentum > 0.0).then_some(buf);
                sgd_step(w, &g, buf, &cfg).unwrap();
            }
        }
        let state = sgd.state();
        for (i, (p, [w, buf])) in params.iter().zip(&own).enumerate() {
            assert_eq!(bits(p.value()), bits(w), "w {cfg:?} {i}");
            if cfg.momentum > 0.0 {
                assert_eq!(state[i].0, format!("sgd.momentum.p{i}"));
                assert_eq!(bits(&state[i].1), bits(buf), "buf {cfg:?} {i}");
            }
        }
    }
}

#[test]
fn a_group_inside_an_earlier_group_steps_its_part_of_that_arena_in_one_launch() {
    let e = gpu!();
    let mut r = rng(25);
    let params = params_of(e, &mut r);
    let whole = Adam::new(params.clone(), AdamConfig::default()).unwrap();
    // The AAE's third phase steps the encoder, a prefix of the first phase's group.
    let prefix = Adam::new(params[..3].to_vec(), AdamConfig::default()).unwrap();
    assert_eq!((whole.launches(), prefix.launches()), (1, 1));
    // Out of order, the parameters are not one run.
    let shuffled = vec![params[3].clone(), params[0].clone()];
    assert_eq!(
        Adam::new(shuffled, AdamConfig::default())
            .unwrap()
            .launches(),
        2
    );
    // A parameter on a view of another buffer stays there and is stepped alone.
    let a = e.view_align();
    let host = Tensor::zeros(e, &[4 * a], DType::F32).unwrap();
    let pinned = Param::new("pinned", host.view(a, &[a + 1]).unwrap()).unwrap();
    let mixed = Adam::new(
        vec![pinned.clone(), params[4].clone()],
        AdamConfig::default(),
    );
    assert_eq!(mixed.unwrap().launches(), 2);
    assert_eq!(pinned.value().byte_offset(), 4 * a as u64);
}

#[test]
fn an_adam_step_of_the_vae_and_the_conv_vae_is_one_dispatch() {
    gpu!();
    // An engine of its own: the shared one counts the dispatches of tests running beside.
    let e = Engine::new().unwrap();
    let models: [(&str, Box<dyn Module>); 2] = [
        (
            "vae",
            Box::new(Vae::new(&e, VaeConfig::default(), 3).unwrap()),
        ),
        ("conv_vae", Box::new(ConvVae::new(&e, 16, 3).unwrap())),
    ];
    for (name, model) in models {
        let params = model.params();
        let mut adam = Adam::new(params.clone(), AdamConfig::default()).unwrap();
        e.sync().unwrap();
        let before = e.stats().dispatches;
        adam.step().unwrap();
        let dispatches = e.stats().dispatches - before;
        // Before arenas: one per parameter tensor.
        eprintln!(
            "{name}: {} parameter tensors, {dispatches} Adam dispatch",
            params.len()
        );
        assert_eq!(dispatches, 1, "{name}");
    }
}
