//! The wide-load matmul kernels (`matmul_wide_rows`, `matmul_wide_ta` and their small-product
//! twin `matmul_wide_ta_short`) against the CPU twin in
//! `kernels-tests/matmul.rs`, on the default engine (lavapipe has subgroups and int64), and
//! the committed shader against its generator `tools/gen_matmul_wide.py`.

use crate::matmul::{
    Target, fusions, more_than_65535_workgroups, random_shapes, tile_edges, w1_shapes,
};
use latent::kernels::matmul::{self, Kernel, Matmul};
use latent::kernels::matmul_wide;
use latent::{DType, Error, Tensor};

fn target() -> Option<Target<'static>> {
    let e = crate::engine()?;
    assert!(
        matmul_wide::usable(e),
        "the default adapter ({}) lacks subgroups >= 8 or int64: these tests need one that has them",
        e.summary()
    );
    Some(Target {
        e,
        kernel: Kernel::Wide,
        round: 8,
    })
}

#[test]
fn wide_plan_needs_8_float_runs() {
    assert_eq!(
        matmul_wide::plan(128, 784, 512, false),
        Some(("matmul_wide_rows", 32, 32))
    );
    assert_eq!(
        matmul_wide::plan(3, 784, 512, false),
        Some(("matmul_wide_rows", 32, 32))
    );
    assert_eq!(
        matmul_wide::plan(128, 32, 256, false),
        Some(("matmul_wide_rows", 32, 32))
    );
    assert_eq!(
        matmul_wide::plan(32, 128, 256, true),
        Some(("matmul_wide_ta_short", 32, 32))
    );
    assert_eq!(
        matmul_wide::plan(12, 8, 8, true),
        Some(("matmul_wide_ta_short", 32, 32))
    );
    assert_eq!(matmul_wide::plan(36, 8, 8, true), None);
    assert_eq!(
        matmul_wide::plan(784, 128, 512, true),
        Some(("matmul_wide_ta", 64, 16))
    );
    assert_eq!(matmul_wide::plan(3, 128, 512, true), None);
    assert_eq!(matmul_wide::plan(128, 12, 512, false), None);
    assert_eq!(matmul_wide::plan(128, 16, 36, false), None);
}

#[test]
fn wide_matmul_matches_cpu_on_random_shapes_and_transpositions() {
    let Some(t) = target() else { return };
    random_shapes(t, 30, 32);
}

#[test]
fn wide_matmul_handles_tile_edges() {
    let Some(t) = target() else { return };
    tile_edges(t);
}

#[test]
fn wide_rows_matmul_takes_any_number_of_rows() {
    let Some(t) = target() else { return };
    // M not a multiple of 8 (or of the 32-row tile) exercises the clamped row loads.
    let e = t.e;
    for m in [1usize, 7, 33, 45] {
        let a: Vec<f32> = (0..m * 16).map(|i| (i % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..16 * 24).map(|i| (i % 7) as f32 - 3.0).collect();
        let at = Tensor::from_slice(e, &a, &[m, 16]).unwrap();
        let bt = Tensor::from_slice(e, &b, &[16, 24]).unwrap();
        let opts = Matmul {
            kernel: Kernel::Wide,
            ..Default::default()
        };
        let got = matmul::matmul_with(&at, &bt, &opts)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let want = crate::matmul::cpu_matmul(&a, &b, (m, 16, 24), false, false, None, false, None);
        assert_eq!(got, want, "m {m}: small integers are exact");
    }
}

#[test]
fn wide_short_ta_matmul_takes_m_a_multiple_of_4() {
    let Some(t) = target() else { return };
    // M % 4 == 0 but not % 8: only the 32-row A^T kernel runs these; odd tiles along N and K too,
    // with the fused bias, ReLU and accumulation and both layouts of B.
    let e = t.e;
    for (i, &(m, k, n)) in [
        (4usize, 8usize, 8usize),
        (12, 24, 40),
        (20, 136, 72),
        (28, 8, 264),
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            matmul_wide::plan(m, k, n, true).map(|p| p.0),
            Some("matmul_wide_ta_short")
        );
        for tb in [false, true] {
            let a: Vec<f32> = (0..k * m).map(|j| (j % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|j| (j % 7) as f32 - 3.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| (j % 5) as f32 - 2.0).collect();
            let init: Vec<f32> = (0..m * n).map(|j| (j % 3) as f32 - 1.0).collect();
            let at = Tensor::from_slice(e, &a, &[k, m]).unwrap();
            let bt = Tensor::from_slice(e, &b, &if tb { [n, k] } else { [k, n] }).unwrap();
            let biast = Tensor::from_slice(e, &bias, &[n]).unwrap();
            let c = Tensor::from_slice(e, &init, &[m, n]).unwrap();
            let opts = Matmul {
                trans_a: true,
                trans_b: tb,
                bias: Some(&biast),
                relu: i % 2 == 0,
                accumulate: true,
                kernel: Kernel::Wide,
            };
            matmul::matmul_into(&at, &bt, &opts, &c).unwrap();
            let got = c.to_vec::<f32>().unwrap();
            let want = crate::matmul::cpu_matmul(
                &a,
                &b,
                (m, k, n),
                true,
                tb,
                Some(&bias),
                opts.relu,
                Some(&init),
            );
            assert_eq!(got, want, "{m}x{k}x{n} tb {tb}: small integers are exact");
        }
    }
}

#[test]
fn wide_matmul_fuses_bias_relu_and_accumulation() {
    let Some(t) = target() else { return };
    fusions(t);
}

#[test]
fn wide_matmul_at_w1_shapes_matches_cpu() {
    let Some(t) = target() else { return };
    w1_shapes(t);
}

#[test]
fn wide_matmul_covers_more_than_65535_workgroups() {
    let Some(t) = target() else { return };
    more_than_65535_workgroups(t, 32);
}

#[test]
fn wide_matmul_refuses_shapes_without_8_float_runs() {
    let Some(t) = target() else { return };
    let a = Tensor::zeros(t.e, &[8, 12], DType::F32).unwrap();
    let b = Tensor::zeros(t.e, &[12, 8], DType::F32).unwrap();
    let opts = Matmul {
        kernel: Kernel::Wide,
        ..Default::default()
    };
    assert!(matches!(
        matmul::matmul_with(&a, &b, &opts),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn a_k_beyond_the_drivers_loop_limit_is_refused_not_wrong() {
    let Some(t) = target() else { return };
    // 8 floats per step: one more step than lavapipe runs.
    let limit = t.e.max_loop_iterations();
    let k = 8 * (limit.unwrap_or(65_535) as usize + 1);
    let a = Tensor::full(t.e, &[1, k], 1.0).unwrap();
    let b = Tensor::full(t.e, &[k, 8], 1.0).unwrap();
    let r = matmul::matmul(&a, &b).and_then(|c| c.to_vec::<f32>());
    match limit {
        Some(_) => assert!(matches!(r, Err(Error::BadInput { .. })), "{r:?}"),
        // Without a loop limit the product must simply be right: K ones summed (exact in f32).
        None => assert_eq!(r.unwrap(), vec![k as f32; 8], "{}", t.e.summary()),
    }
}

#[test]
fn the_committed_wide_shader_is_what_its_generator_writes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("matmul_wide-{}.wgsl", std::process::id()));
    let status = std::process::Command::new("python3")
        .arg(root.join("tools/gen_matmul_wide.py"))
        .arg(&out)
        .status();
    let status = match status {
        Ok(s) => s,
        Err(e) if std::env::var_os("LATENT_SKIP_GENERATOR_TEST").is_some() => {
            eprintln!("SKIPPED on purpose (LATENT_SKIP_GENERATOR_TEST): python3 not runnable: {e}");
            return;
        }
        Err(e) => panic!(
            "python3 is needed to regenerate shaders/matmul_wide.wgsl ({e}); install it or set \
             LATENT_SKIP_GENERATOR_TEST=1 on purpose"
        ),
    };
    assert!(
        status.success(),
        "tools/gen_matmul_wide.py failed: {status}"
    );
    let generated = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let committed = std::fs::read_to_string(root.join("shaders/matmul_wide.wgsl")).unwrap();
    assert!(
        generated == committed,
        "shaders/matmul_wide.wgsl differs from the generator's output: edit \
         tools/gen_matmul_wide.py and run `python3 tools/gen_matmul_wide.py shaders/matmul_wide.wgsl`"
    );
}
