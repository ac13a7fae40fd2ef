//! Benchmarks of the contract in BENCH.md (repository root): `bench kernels` measures the
//! device's FMA peak and each kernel's GFLOP/s as % of it, in the same run.
//! `cargo run --release --example bench -- kernels`.

#[path = "common/flags.rs"]
mod flags;

use clap::{Parser, Subcommand};
use latent::kernels::batchnorm::{self as bn, BatchNormConfig};
use latent::kernels::conv_transpose2d::ConvTranspose2dParams;
use latent::kernels::conv2d::{Conv, Conv2dParams, TapSource, WeightGrad};
use latent::kernels::matmul::{self, Matmul};
use latent::kernels::vq::{self, Search};
use latent::kernels::{elementwise, peak};
use latent::{DType, Engine, Result, Tensor};
use rand::{Rng, SeedableRng};
use std::time::Instant;

#[derive(Parser)]
#[command(
    about = "Measures training steps of the W1 / W2 models (images/s) or the kernels (GFLOP/s as % \
             of the FMA peak measured in the same run) and prints a table, or one JSON line with \
             --json; writes no files."
)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
    /// Print one JSON line instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Timed repetitions (calls) per trial of a kernel measurement; each measurement takes the
    /// median of 5 trials.
    #[arg(long, global = true, default_value_t = 10)]
    reps: u32,
    /// mlp / conv: after the timed run, profile this many more training steps kernel by kernel
    /// (each dispatch waited for alone) and print where a step's time goes (0: no profile).
    #[arg(long, global = true, default_value_t = 0)]
    profile: usize,
    /// kernels: measure only the rows whose name contains this text (the peak is always measured).
    #[arg(long, global = true)]
    only: Option<String>,
}

#[derive(Subcommand)]
enum Workload {
    /// FMA peak, empty-dispatch cost, matmul GFLOP/s at 1024³ and the W1 shapes, the W2
    /// convolutions (forward, dX, dW at batch 128), BatchNorm µs per call at the W2 shapes and
    /// the nearest-code search of a VQ-VAE (fused and by matmul + argmin).
    Kernels,
    /// W2: training steps of the convolutional VAE with batch norm (images/s over steps [20, N)).
    Conv {
        /// Training steps in all; the first 20 are warm-up and not timed.
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Images per training step.
        #[arg(long, default_value_t = 128)]
        batch: usize,
    },
    /// W1: training steps of the MLP VAE on Fashion-MNIST (images/s over steps [20, N)).
    Mlp {
        /// Training steps in all; the first 20 are warm-up and not timed.
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// Images per training step.
        #[arg(long, default_value_t = 128)]
        batch: usize,
    },
}

/// Median seconds per call of `f` over 5 trials of `reps` calls, each trial ended by a sync.
fn time_per_call(engine: &Engine, reps: u32, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    engine.sync()?;
    let mut trials = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        engine.sync()?;
        trials.push(t.elapsed().as_secs_f64() / reps as f64);
    }
    trials.sort_by(f64::total_cmp);
    Ok(trials[2])
}

/// GFLOP/s of the register-resident FMA kernel: the yardstick for every other figure.
fn measure_peak(engine: &Engine) -> Result<f64> {
    let (workgroups, iters) = peak::default_size(engine);
    let out = Tensor::uninit(engine, &[peak::outputs(workgroups)], DType::F32)?;
    let secs = time_per_call(engine, 3, || peak::fma_peak(&out, workgroups, iters))?;
    Ok(peak::flops(workgroups, iters) / secs / 1e9)
}

struct Row {
    name: String,
    gflops: f64,
    /// Seconds per call (to aggregate a whole step's products).
    secs: f64,
}

/// One matmul measurement: (M, K, N) of op(A)·op(B) with A / B stored transposed if asked.
struct Product {
    name: String,
    mkn: (usize, usize, usize),
    trans_a: bool,
    trans_b: bool,
}

fn bench_matmul(engine: &Engine, p: Product, reps: u32) -> Result<Row> {
    let (m, k, n) = p.mkn;
    let a_shape = if p.trans_a { [k, m] } else { [m, k] };
    let b_shape = if p.trans_b { [n, k] } else { [k, n] };
    let a = Tensor::full(engine, &a_shape, 0.5)?;
    let b = Tensor::full(engine, &b_shape, 0.25)?;
    let c = Tensor::uninit(engine, &[m, n], DType::F32)?;
    let opts = Matmul {
        trans_a: p.trans_a,
        trans_b: p.trans_b,
        ..Default::default()
    };
    let secs = time_per_call(engine, reps, || matmul::matmul_into(&a, &b, &opts, &c))?;
    Ok(Row {
        name: p.name,
        gflops: 2.0 * (m * n * k) as f64 / secs / 1e9,
        secs,
    })
}

/// W2 (BENCH.md) BatchNorm inputs at batch 128: encoder 1, encoder 2, decoder.
const W2_BATCHNORM: [[usize; 4]; 3] = [[128, 32, 14, 14], [128, 64, 7, 7], [128, 32, 14, 14]];

/// µs per call of BatchNorm's training forward, eval forward and backward on `shape`.
fn bench_batchnorm(engine: &Engine, shape: [usize; 4], reps: u32) -> Result<[f64; 3]> {
    let x = Tensor::full(engine, &shape, 0.5)?;
    let c = [shape[1]];
    let (gamma, beta) = (
        Tensor::full(engine, &c, 1.0)?,
        Tensor::full(engine, &c, 0.0)?,
    );
    let (rm, rv) = (
        Tensor::full(engine, &c, 0.0)?,
        Tensor::full(engine, &c, 1.0)?,
    );
    let cfg = BatchNormConfig::default();
    let train = time_per_call(engine, reps, || {
        bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &cfg).map(drop)
    })?;
    let eval = time_per_call(engine, reps, || {
        bn::batchnorm_eval(&x, &gamma, &beta, &rm, &rv, cfg.eps).map(drop)
    })?;
    let (_, saved) = bn::batchnorm_train(&x, &gamma, &beta, &rm, &rv, &cfg)?;
    let backward = time_per_call(engine, reps, || {
        bn::batchnorm_backward(&x, &x, &gamma, &saved).map(drop)
    })?;
    Ok([train, eval, backward].map(|s| s * 1e6))
}

/// W1 (BENCH.md) layer shapes as (M, K, N) of the forward product at batch 128.
const W1: [(usize, usize, usize); 6] = [
    (128, 784, 512),
    (128, 512, 256),
    (128, 256, 64),
    (128, 32, 256),
    (128, 256, 512),
    (128, 512, 784),
];

/// W2 (BENCH.md) convolutions, k4 s2 p1: (Cin, H, Cout) of the encoder's Conv2d layers and of
/// the decoder's ConvTranspose2d layers (H = input size).
const W2_CONV: [(usize, usize, usize); 2] = [(1, 28, 32), (32, 14, 64)];
const W2_CONVT: [(usize, usize, usize); 2] = [(64, 7, 32), (32, 14, 1)];

/// Forward, dX and dW of the W2 convolutions at `batch`; FLOPs = 2·B·H'·W'·Cout·Cin·16 each.
/// Only the rows whose name contains `only`; with `profile` > 0, each also profiled kernel by kernel.
fn bench_w2_conv(
    engine: &Engine,
    batch: usize,
    reps: u32,
    only: &str,
    profile: usize,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut row = |name: String, flops: f64, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        if !name.contains(only) {
            return Ok(());
        }
        let secs = time_per_call(engine, reps, &mut *f)?;
        if profile > 0 {
            println!("{name}:");
            print_profile(engine, profile, |_| f())?;
        }
        rows.push(Row {
            name,
            gflops: flops / secs / 1e9,
            secs,
        });
        Ok(())
    };
    // (name, tap source, x, weight and dy shapes) of each layer.
    let mut layers = Vec::new();
    for (cin, h, cout) in W2_CONV {
        let source = TapSource::Dense(Conv2dParams::square(2, 1, 1));
        let shapes = [
            [batch, cin, h, h],
            [cout, cin, 4, 4],
            [batch, cout, h / 2, h / 2],
        ];
        layers.push((
            format!("conv2d {cin}->{cout} {h}x{h}"),
            source,
            shapes,
            cin * cout,
        ));
    }
    for (cin, h, cout) in W2_CONVT {
        let source = TapSource::Transposed(ConvTranspose2dParams::square(2, 1, 1, 0));
        let shapes = [
            [batch, cin, h, h],
            [cin, cout, 4, 4],
            [batch, cout, 2 * h, 2 * h],
        ];
        layers.push((
            format!("convT {cin}->{cout} {h}x{h}"),
            source,
            shapes,
            cin * cout,
        ));
    }
    for (name, source, [xs, ws, ys], channels) in layers {
        let x = Tensor::full(engine, &xs, 0.5)?;
        let w = Tensor::full(engine, &ws, 0.25)?;
        let b = Tensor::full(engine, &[ys[1]], 0.1)?;
        let dy = Tensor::full(engine, &ys, 0.5)?;
        let dw = Tensor::zeros(engine, &ws, DType::F32)?;
        // The smaller image's pixels times 16 taps per channel pair.
        let pixels = (xs[2] * xs[3]).min(ys[2] * ys[3]);
        let flops = 2.0 * (batch * pixels * channels * 16) as f64;
        let plan = Conv::new(source, &xs, &ws)?;
        row(format!("{name} fwd"), flops, &mut || {
            plan.forward(&x, &w, Some(&b), false).map(drop)
        })?;
        row(format!("{name} dX"), flops, &mut || {
            plan.backward(&dy, Some(&w), None).map(drop)
        })?;
        // dW from x alone: gathering x's columns (or rows) is part of it, as without a forward.
        row(format!("{name} dW"), flops, &mut || {
            let saved = plan.keep(&x)?;
            let grad = WeightGrad {
                saved: &saved,
                into: &dw,
                accumulate: false,
            };
            plan.backward(&dy, None, Some(grad)).map(drop)
        })?;
    }
    Ok(rows)
}

/// Nearest-code searches (N, K, D): the VQ-VAE's 128 images of 7×7 latents with K = 512 and
/// D = 64, and the largest codebook the kernels are built for.
const VQ: [(usize, usize, usize); 2] = [(128 * 49, 512, 64), (4096, 4096, 256)];

/// The fused search against the plain way (norms, Z·(−2E)ᵀ + ‖e‖² by matmul, then an argmin over
/// the [N, K] matrix), both as 2·N·K·D FLOPs per call, on random rows and codes.
fn bench_vq(engine: &Engine, reps: u32) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (n, k, d) in VQ {
        let mut random =
            |len| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let z = Tensor::from_slice(engine, &random(n * d), &[n, d])?;
        let e = Tensor::from_slice(engine, &random(k * d), &[k, d])?;
        let reps = if n * k * d > 1 << 28 {
            reps.min(2)
        } else {
            reps
        };
        for (search, what) in [(Search::Fused, "fused"), (Search::Matmul, "matmul+argmin")] {
            let secs = time_per_call(engine, reps, || vq::nearest_with(&z, &e, search).map(drop))?;
            rows.push(Row {
                name: format!("vq nearest {n}x{k}x{d} {what}"),
                gflops: 2.0 * (n * k * d) as f64 / secs / 1e9,
                secs,
            });
        }
    }
    Ok(rows)
}

fn kernels(engine: &Engine, reps: u32, json: bool, only: &str, profile: usize) -> Result<()> {
    let peak = measure_peak(engine)?;
    let one = Tensor::uninit(engine, &[1], DType::F32)?;
    let empty_us = 1e6 * time_per_call(engine, 1000, || elementwise::fill(&one, 0.0))?;
    let product = |name: String, mkn, trans_a, trans_b| Product {
        name,
        mkn,
        trans_a,
        trans_b,
    };
    let mut rows = Vec::new();
    if "matmul 1024x1024x1024".contains(only) {
        rows.push(bench_matmul(
            engine,
            product(
                "matmul 1024x1024x1024".into(),
                (1024, 1024, 1024),
                false,
                false,
            ),
            reps.min(4),
        )?);
    }
    let w1_start = rows.len();
    for (m, k, n) in W1 {
        // Forward X·W, then the backward products dX = dY·Wᵀ and dW = Xᵀ·dY.
        let cases = [
            (format!("matmul fwd {m}x{k}x{n}"), (m, k, n), false, false),
            (
                format!("matmul dX {m}x{n}x{k} (B^T)"),
                (m, n, k),
                false,
                true,
            ),
            (
                format!("matmul dW {k}x{m}x{n} (A^T)"),
                (k, m, n),
                true,
                false,
            ),
        ];
        for (name, mkn, ta, tb) in cases.into_iter().filter(|c| c.0.contains(only)) {
            rows.push(bench_matmul(engine, product(name, mkn, ta, tb), reps)?);
        }
    }
    // All 18 products of one W1 training step, as the step would run them back to back.
    let w1 = &rows[w1_start..];
    let secs: f64 = w1.iter().map(|r| r.secs).sum();
    let flops: f64 = w1.iter().map(|r| r.gflops * r.secs).sum();
    if only.is_empty() {
        rows.push(Row {
            name: "W1 step, all 18 products".into(),
            gflops: flops / secs,
            secs,
        });
    }
    rows.extend(bench_w2_conv(engine, 128, reps, only, profile)?);
    if "vq nearest".contains(only) {
        rows.extend(bench_vq(engine, reps)?);
    }
    let mut norms = Vec::new();
    for shape in W2_BATCHNORM
        .into_iter()
        .filter(|_| "batchnorm".contains(only))
    {
        norms.push((shape, bench_batchnorm(engine, shape, reps)?));
    }
    let adapter = engine.summary();
    if json {
        let norms: Vec<String> = norms
            .iter()
            .map(|(s, [t, e, b])| {
                format!("{{\"shape\":{s:?},\"train_us\":{t:.1},\"eval_us\":{e:.1},\"backward_us\":{b:.1}}}")
            })
            .collect();
        let kernels: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"name\":\"{}\",\"gflops\":{:.2},\"pct_peak\":{:.1}}}",
                    r.name,
                    r.gflops,
                    100.0 * r.gflops / peak
                )
            })
            .collect();
        println!(
            "{{\"workload\":\"kernels\",\"adapter\":\"{}\",\"fma_peak_gflops\":{peak:.2},\"empty_dispatch_us\":{empty_us:.2},\"kernels\":[{}],\"batchnorm\":[{}]}}",
            adapter.replace('"', "'"),
            kernels.join(","),
            norms.join(",")
        );
    } else {
        println!("adapter: {adapter}");
        println!("FMA peak: {peak:.1} GFLOP/s (register-resident kernel, this run)");
        println!(
            "empty dispatch: {empty_us:.1} µs (recorded and executed, 1000 in one submission)"
        );
        println!("{:<40} {:>10} {:>8}", "kernel", "GFLOP/s", "% peak");
        for r in &rows {
            println!(
                "{:<40} {:>10.2} {:>7.1}%",
                r.name,
                r.gflops,
                100.0 * r.gflops / peak
            );
        }
        if !norms.is_empty() {
            println!(
                "{:<40} {:>10} {:>8} {:>10}",
                "batchnorm (µs per call)", "train", "eval", "backward"
            );
        }
        for (shape, [t, e, b]) in &norms {
            println!("{:<40} {t:>10.1} {e:>8.1} {b:>10.1}", format!("{shape:?}"));
        }
    }
    Ok(())
}

/// W1 (`mlp`) and W2 (`conv`) of BENCH.md: a VAE's training steps on Fashion-MNIST batches.
fn train_bench(
    engine: &Engine,
    workload: &str,
    steps: usize,
    batch: usize,
    json: bool,
    profile: usize,
) -> Result<()> {
    use latent::data::{DeviceSplit, FashionMnist};
    use latent::models::conv_vae::ConvVae;
    use latent::models::vae::{self, Autoencoder, Objective, TrainSettings, Vae, VaeConfig};
    use latent::optim::{Batch, Examples, Terms};
    const WARMUP: usize = 20;
    if steps <= WARMUP {
        return Err(latent::Error::bad(
            "bench",
            format!("--steps must exceed the {WARMUP} warm-up steps"),
        ));
    }
    let data = FashionMnist::load(None)?;
    let settings = TrainSettings {
        batch,
        lr: 1e-3,
        beta: 1.0,
        warmup: 0,
        seed: 0,
        objective: Objective::Elbo,
        binarize: false,
    };
    let model: Box<dyn Autoencoder> = if workload == "conv" {
        Box::new(ConvVae::new(engine, 32, settings.seed)?)
    } else {
        Box::new(Vae::new(engine, VaeConfig::default(), settings.seed)?)
    };
    let config = settings.config("fashion-mnist train", None);
    let mut trainer = vae::trainer(model, &settings, config, data.train.len())?;
    let batches = latent::data::Batches::new(data.train.len(), batch, 0)?.drop_last(true);
    let epoch = batches.epoch(0);
    // The training images on the device and the epoch's order uploaded once, here: a step
    // uploads nothing, its batch gathered and converted there.
    let train = DeviceSplit::new(engine, &data.train)?;
    train.start_epoch(engine, &epoch)?;
    // Steps all-reduced and their seconds so far, in a data-parallel run (feature `mpi`).
    let reduced = std::cell::Cell::new(None::<(u64, f64, f64)>);
    // Host seconds spent recording steps (the tape, kernel launches, Adam): the submission
    // is left out, since a driver may block there until the device has room.
    let recording = std::cell::Cell::new(0.0);
    // The trainer's own step (phases, tape, Adam), without its epoch loop and step log.
    let mut step = |s: usize| -> Result<Terms> {
        let Batch { x, indices, .. } = train.batch(engine, &epoch, s % epoch.len())?;
        let labels = vec![0; batch];
        let t = Instant::now();
        let mut phases = trainer.train_step(&Batch { x, labels, indices })?;
        recording.set(recording.get() + t.elapsed().as_secs_f64());
        engine.flush()?;
        #[cfg(feature = "mpi")]
        reduced.set((trainer.all_reduce_time()).map(|r| (r.steps, r.seconds, r.mpi_seconds)));
        Ok(phases.remove(0))
    };
    // Every step keeps the previous step's loss alive, as the timed loop does, so the pool
    // holds what the timed steps need before memory is counted.
    let mut last: Option<Tensor> = None;
    for s in 0..WARMUP {
        last.replace(step(s)?[0].1.value().clone());
    }
    engine.sync()?;
    engine.reset_stats();
    let counted = step(WARMUP)?;
    let per_step = engine.stats();
    last.replace(counted[0].1.value().clone());
    drop(counted);
    let memory_before = engine.allocated_bytes();
    let start = Instant::now();
    let reduced_before = reduced.get();
    let recorded_before = recording.get();
    for s in WARMUP + 1..steps {
        // Keep the loss tensor only: a step's terms hold its whole tape, whose buffers the
        // next step would otherwise have to allocate afresh.
        last.replace(step(s)?[0].1.value().clone());
    }
    let host_secs = recording.get() - recorded_before;
    // Timing ends when the device has finished: read the last loss back.
    let loss = last
        .map(|loss| loss.to_vec::<f32>())
        .transpose()?
        .map_or(f32::NAN, |v| v[0]);
    let secs = start.elapsed().as_secs_f64();
    let timed = steps - WARMUP - 1;
    let memory_growth = engine.allocated_bytes() - memory_before;
    let host_ms = host_secs / timed as f64 * 1e3;
    let us_per_dispatch = host_ms * 1e3 / per_step.dispatches.max(1) as f64;
    let throughput = (timed * batch) as f64 / secs;
    // In a data-parallel run: the all-reduce's milliseconds per step (in all, and inside MPI)
    // and its share of the step.
    let all_reduce = match (reduced_before, reduced.get()) {
        (Some((n0, s0, m0)), Some((n1, s1, m1))) if n1 > n0 => {
            let per_step = |a: f64, b: f64| (b - a) / (n1 - n0) as f64 * 1e3;
            let ms = per_step(s0, s1);
            Some((ms, per_step(m0, m1), ms / (secs / timed as f64 * 1e3)))
        }
        _ => None,
    };
    // Median step time: a few more steps, each waited for.
    // Each step's recording is timed too: with the device idle, the host has the machine to
    // itself (on a CPU adapter the running device competes with it for the cores).
    let mut recorded = Vec::new();
    let mut times: Vec<f64> = (0..21)
        .map(|i| {
            let t = Instant::now();
            let before = recording.get();
            let out = step(steps + i)
                .and_then(|_| engine.sync())
                .map(|_| t.elapsed().as_secs_f64() * 1e3);
            recorded.push((recording.get() - before) * 1e3);
            out
        })
        .collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    recorded.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let idle_host_ms = recorded[recorded.len() / 2];
    let idle_us_per_dispatch = idle_host_ms * 1e3 / per_step.dispatches.max(1) as f64;
    if profile > 0 {
        print_profile(engine, profile, |i| step(steps + 21 + i).map(drop))?;
    }
    let adapter = engine.summary();
    let extra = match all_reduce {
        Some((ms, mpi, share)) => format!(
            ",\"allreduce_ms_per_step\":{ms:.3},\"allreduce_mpi_ms_per_step\":{mpi:.3},\"allreduce_share\":{share:.4}"
        ),
        None => String::new(),
    };
    if json {
        println!(
            "{{\"workload\":\"{workload}\",\"throughput_img_s\":{throughput:.1},\"step_ms_median\":{median:.3},\"adapter\":\"{}\",\"steps\":{steps},\"batch\":{batch},\"dispatches_per_step\":{},\"submits_per_step\":{},\"readbacks_per_step\":{},\"uploads_per_step\":{},\"bind_groups_per_step\":{},\"param_bytes_per_step\":{},\"host_ms_per_step\":{idle_host_ms:.3},\"host_us_per_dispatch\":{idle_us_per_dispatch:.2},\"host_ms_per_step_busy\":{host_ms:.3},\"memory_growth_bytes\":{memory_growth},\"last_loss\":{loss:.3}{extra}}}",
            adapter.replace('"', "'"),
            per_step.dispatches,
            per_step.submits,
            per_step.readbacks,
            per_step.uploads,
            per_step.bind_groups,
            per_step.param_bytes
        );
    } else {
        println!("adapter: {adapter}");
        println!(
            "{workload}: {throughput:.0} images/s over steps [{WARMUP}, {steps}) at batch {batch}; median step {median:.2} ms"
        );
        println!(
            "per step: {} dispatches, {} submits, {} readbacks; last loss {loss:.3}",
            per_step.dispatches, per_step.submits, per_step.readbacks
        );
        println!(
            "per step: {} host uploads, {} new bind groups, {} bytes of kernel parameters written",
            per_step.uploads, per_step.bind_groups, per_step.param_bytes
        );
        println!(
            "host: {idle_host_ms:.2} ms to record a step ({idle_us_per_dispatch:.1} µs per dispatch) \
             with the device idle, {host_ms:.2} ms ({us_per_dispatch:.1} µs) while it runs"
        );
        println!("device memory grew by {memory_growth} bytes over the timed steps");
        if let Some((ms, mpi, share)) = all_reduce {
            println!(
                "all-reduce of the gradients: {ms:.2} ms per step ({mpi:.2} ms inside MPI), {:.1} % of the step",
                100.0 * share
            );
        }
    }
    Ok(())
}

/// Runs `steps` steps with per-kernel profiling on and prints each kernel's share per step.
fn print_profile(
    engine: &Engine,
    steps: usize,
    mut step: impl FnMut(usize) -> Result<()>,
) -> Result<()> {
    engine.set_profiling(true)?;
    for i in 0..steps {
        step(i)?;
    }
    let rows = engine.profile();
    engine.set_profiling(false)?;
    let total: f64 = rows.iter().map(|r| r.secs).sum();
    let n = steps as f64;
    println!(
        "profile over {steps} steps (each dispatch waited for alone: {:.1} ms per step in all)",
        total / n * 1e3
    );
    println!(
        "{:<36} {:>8} {:>10} {:>7}",
        "kernel", "calls", "ms/step", "share"
    );
    for r in &rows {
        println!(
            "{:<36} {:>8.1} {:>10.3} {:>6.1}%",
            r.kernel,
            r.calls as f64 / n,
            r.secs / n * 1e3,
            100.0 * r.secs / total
        );
    }
    Ok(())
}

impl Cli {
    /// Every flag checked before the device is opened.
    fn validate(&self) -> Result<()> {
        flags::at_least("--reps", self.reps as usize, 1)?;
        match self.workload {
            Workload::Kernels => Ok(()),
            Workload::Mlp { steps, batch } | Workload::Conv { steps, batch } => {
                flags::at_least("--steps", steps, 21)?;
                flags::at_least("--batch", batch, 1)
            }
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let run = || -> Result<()> {
        cli.validate()?;
        let engine = Engine::new()?;
        match cli.workload {
            Workload::Kernels => kernels(
                &engine,
                cli.reps,
                cli.json,
                cli.only.as_deref().unwrap_or(""),
                cli.profile,
            ),
            Workload::Mlp { steps, batch } => {
                train_bench(&engine, "mlp", steps, batch, cli.json, cli.profile)
            }
            Workload::Conv { steps, batch } => {
                train_bench(&engine, "conv", steps, batch, cli.json, cli.profile)
            }
        }
    };
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}
