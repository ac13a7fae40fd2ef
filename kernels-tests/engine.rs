//! Engine and tensor behaviour: uploads and readbacks, pooling, grid folding, statistics,
//! embedding on a host device, and typed errors for bad input.

use crate::gpu;
use latent::kernels::elementwise::{self as ew, Unary};
use latent::{Bind, BindingProblem, DType, Engine, Error, Tensor};

#[test]
fn tensors_round_trip_and_reshape_for_free() {
    let e = gpu!();
    let x: Vec<f32> = (0..35).map(|i| i as f32 * 0.5 - 3.0).collect();
    let t = Tensor::from_slice(e, &x, &[5, 7]).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), x);
    let r = t.reshape(&[7, 5]).unwrap();
    assert!(r.same_buffer(&t));
    assert_eq!(r.shape(), &[7, 5]);
    assert!(matches!(
        t.reshape(&[6, 6]),
        Err(Error::ShapeMismatch { .. })
    ));
    let u: Vec<u32> = (0..9).map(|i| i * 1_000_003).collect();
    let tu = Tensor::from_slice(e, &u, &[9]).unwrap();
    assert_eq!(tu.to_vec::<u32>().unwrap(), u);
    assert!(matches!(
        tu.to_vec::<f32>(),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(
        Tensor::zeros(e, &[3, 3], DType::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0.0)
    );
}

#[test]
fn zeros_clears_a_reused_buffer() {
    let e = gpu!();
    // Dirty a buffer, drop it so the pool keeps it, and ask for zeros of the same class.
    for _ in 0..3 {
        let t = Tensor::full(e, &[1000], 7.0).unwrap();
        drop(t);
        let z = Tensor::zeros(e, &[1000], DType::F32).unwrap();
        assert!(z.to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
    }
}

#[test]
fn pool_reuses_freed_buffers_and_stats_count_work() {
    // A private engine so other tests' work does not enter the counts.
    let Some(_) = crate::engine() else { return };
    let e = Engine::new().unwrap();
    let a = Tensor::full(&e, &[4096], 1.0).unwrap();
    let (_, created) = e.pool_stats();
    drop(a);
    let b = Tensor::uninit(&e, &[4000], DType::F32).unwrap();
    assert_eq!(
        e.pool_stats().1,
        created,
        "a same-class request must reuse the freed buffer"
    );
    e.reset_stats();
    ew::fill(&b, 2.0).unwrap();
    let c = ew::unary(Unary::Square, &b).unwrap();
    let d = ew::unary(Unary::Neg, &c).unwrap();
    assert_eq!(
        e.stats().submits,
        0,
        "nothing is submitted before a readback"
    );
    assert!(d.to_vec::<f32>().unwrap().iter().all(|&v| v == -4.0));
    let s = e.stats();
    assert_eq!((s.dispatches, s.submits, s.readbacks), (3, 1, 1));
}

/// A step recorded again (same shapes, so the pool hands out the same buffers) reuses every
/// bind group and writes only the kernel parameters that changed; the new values are the ones
/// the kernels read. Trimming the pool empties the cache, and the results stay right.
#[test]
fn a_repeated_step_reuses_its_bind_groups_and_writes_only_changed_parameters() {
    let e = Engine::new().unwrap();
    let x = Tensor::from_slice(&e, &[1.0f32, 2.0, 3.0, 4.0, 5.0], &[5]).unwrap();
    // One "step": two kernels with parameters, one submission; `scale` plays a step counter.
    let step = |scale: f32| -> Vec<f32> {
        let y = ew::affine(&x, scale, 1.0).unwrap();
        let z = ew::unary(Unary::Square, &y).unwrap();
        let out = ew::affine(&z, 1.0, -1.0).unwrap();
        out.to_vec::<f32>().unwrap()
    };
    let want = |scale: f32| -> Vec<f32> {
        [1.0f32, 2.0, 3.0, 4.0, 5.0]
            .iter()
            .map(|v| (v * scale + 1.0).powi(2) - 1.0)
            .collect()
    };
    assert_eq!(step(2.0), want(2.0));
    e.reset_stats();
    assert_eq!(step(2.0), want(2.0));
    let same = e.stats();
    assert_eq!(
        same.bind_groups, 0,
        "an identical step creates no bind group"
    );
    assert_eq!(same.param_bytes, 0, "an identical step writes no parameter");
    e.reset_stats();
    assert_eq!(
        step(3.0),
        want(3.0),
        "the changed parameter reaches the kernel"
    );
    let moved = e.stats();
    assert_eq!(moved.bind_groups, 0);
    assert!(
        (4..=16).contains(&moved.param_bytes),
        "only the changed scale is written: {} bytes",
        moved.param_bytes
    );
    e.trim_pool();
    e.reset_stats();
    assert_eq!(step(4.0), want(4.0));
    assert!(
        e.stats().bind_groups > 0,
        "a trimmed pool starts the cache over"
    );
    assert_eq!(e.stats().uploads, 0, "no host data in a step");
    Tensor::from_slice(&e, &[1.0f32], &[1]).unwrap();
    assert_eq!(e.stats().uploads, 1);
}

#[test]
fn grid_folding_keeps_every_dimension_within_the_limit() {
    assert_eq!(latent::engine::fold(10, 65_535), [10, 1, 1]);
    assert_eq!(latent::engine::fold(65_536, 65_535), [65_535, 2, 1]);
    for n in [65_535u32, 65_536, 1 << 20, 123_456_789, u32::MAX] {
        let [x, y, z] = latent::engine::fold(n, 65_535);
        assert!(x <= 65_535 && y <= 65_535 && z <= 65_535);
        assert!(x as u64 * y as u64 * z as u64 >= n as u64, "{n}");
        // The grid must not overshoot by more than one row of x (the shader skips the tail).
        assert!(
            (x as u64 * y as u64 * z as u64) < n as u64 + x as u64 * y as u64,
            "{n}"
        );
    }
}

#[test]
fn empty_tensors_are_refused_with_a_typed_error() {
    let e = gpu!();
    assert!(matches!(
        Tensor::zeros(e, &[0, 3], DType::F32),
        Err(Error::EmptyTensor { .. })
    ));
    assert!(matches!(
        Tensor::from_slice::<f32>(e, &[], &[0]),
        Err(Error::EmptyTensor { .. })
    ));
    assert!(matches!(
        Tensor::uninit(e, &[], DType::F32).map(|t| t.numel()),
        Ok(1)
    ));
    let t = Tensor::zeros(e, &[2], DType::F32).unwrap();
    assert!(matches!(t.reshape(&[2, 0]), Err(Error::EmptyTensor { .. })));
}

#[test]
fn wrong_sizes_give_typed_errors() {
    let e = gpu!();
    assert!(matches!(
        Tensor::from_slice(e, &[1.0f32, 2.0, 3.0], &[2, 2]),
        Err(Error::ShapeMismatch { .. })
    ));
    // Far above any device's buffer size limit.
    assert!(matches!(
        Tensor::uninit(e, &[1 << 31, 8], DType::F32),
        Err(Error::BufferTooLarge { .. })
    ));
    let a = Tensor::zeros(e, &[3], DType::F32).unwrap();
    let b = Tensor::zeros(e, &[4], DType::F32).unwrap();
    assert!(matches!(
        ew::unary_into(Unary::Exp, &a, &b),
        Err(Error::ShapeMismatch { .. })
    ));
    // An output aliasing its input is refused instead of tripping wgpu validation.
    assert!(matches!(
        ew::unary_into(Unary::Exp, &a, &a),
        Err(Error::Binding {
            problem: BindingProblem::Aliased { .. },
            ..
        })
    ));
}

#[test]
fn a_binding_above_the_storage_limit_is_refused() {
    let e = gpu!();
    let limit = e.limits().max_storage_buffer_binding_size;
    let n = (limit / 4 + 1) as usize;
    if (n as u64) * 4 > e.limits().max_buffer_size {
        // No buffer can exceed the binding limit here: the allocation itself is refused.
        let r = Tensor::uninit(e, &[n], DType::F32);
        assert!(matches!(r, Err(Error::BufferTooLarge { .. })), "{r:?}");
        return;
    }
    let big = Tensor::uninit(e, &[n], DType::F32).unwrap();
    match ew::unary(Unary::Neg, &big) {
        Err(Error::BindingTooLarge {
            bytes, limit: l, ..
        }) => {
            assert_eq!((bytes, l), (n as u64 * 4, limit));
        }
        other => panic!("expected BindingTooLarge, got {other:?}"),
    }
}

#[test]
fn no_adapter_error_tells_how_to_install_a_driver() {
    let msg = Error::NoAdapter {
        detail: "found []".into(),
    }
    .to_string();
    assert!(msg.contains("mesa-vulkan-drivers"), "{msg}");
}

#[test]
fn engine_runs_on_a_host_device_and_writes_into_a_host_buffer() {
    use wgpu::util::DeviceExt;
    let Some(_) = crate::engine() else { return };
    // The host program: its own instance, adapter, device, queue and buffers.
    latent::engine::quiet_headless_device_selection();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter =
        pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("device");
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let a_host = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("host a"),
        contents: bytemuck::cast_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]),
        usage,
    });
    let out_host = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host out"),
        size: 16,
        usage,
        mapped_at_creation: false,
    });

    let engine = Engine::from_device(&adapter, device.clone(), queue.clone());
    let a = Tensor::from_buffer(&engine, a_host.clone(), &[2, 3], DType::F32).unwrap();
    let b = Tensor::from_slice(&engine, &[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap();
    let out = Tensor::from_buffer(&engine, out_host.clone(), &[2, 2], DType::F32).unwrap();
    latent::kernels::matmul::matmul_into(&a, &b, &Default::default(), &out).unwrap();
    engine.flush().unwrap();

    // Read the host's own buffer with the host's own staging copy: no engine readback.
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host staging"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(&out_host, 0, &staging, 0, 16);
    queue.submit([enc.finish()]);
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let bytes = staging.slice(..).get_mapped_range().unwrap().to_vec();
    let got: Vec<f32> = bytemuck::cast_slice(&bytes).to_vec();
    // [[1,2,3],[4,5,6]] · [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
    assert_eq!(got, [4.0, 5.0, 10.0, 11.0]);
}

#[test]
fn dispatch_checks_its_arguments_against_the_shader() {
    let e = gpu!();
    let shader = &latent::kernels::elementwise::SHADER;
    let a = Tensor::zeros(e, &[4], DType::F32).unwrap();
    let params = [0u8; 32];
    // `unary` binds x and out: x alone leaves `out` unbound.
    let err = e.dispatch(
        shader,
        "unary",
        &[],
        &[Bind::read("x", &a)],
        &params,
        latent::Grid::Linear(1),
    );
    assert!(matches!(err, Err(Error::Binding { .. })), "{err:?}");
    // No params for an entry point that has a uniform.
    let b = Tensor::zeros(e, &[4], DType::F32).unwrap();
    let both = [Bind::read("x", &a), Bind::write("out", &b)];
    let err = e.dispatch(shader, "unary", &[], &both, &[], latent::Grid::Linear(1));
    assert!(matches!(err, Err(Error::Binding { .. })), "{err:?}");
    // A grid dimension above the device limit.
    let too_big = e.limits().max_compute_workgroups_per_dimension + 1;
    let err = e.dispatch(
        shader,
        "unary",
        &[],
        &both,
        &params,
        latent::Grid::Dims([too_big, 1, 1]),
    );
    assert!(matches!(err, Err(Error::BadInput { .. })), "{err:?}");
    // An entry point that does not exist.
    let err = e.dispatch(shader, "nope", &[], &both, &params, latent::Grid::Linear(1));
    assert!(matches!(err, Err(Error::Shader { .. })), "{err:?}");
}

#[test]
fn copy_region_moves_a_range_in_order_with_kernels() {
    let e = gpu!();
    let src = Tensor::from_slice(e, &[1.0f32, 2.0, 3.0, 4.0], &[4]).unwrap();
    let log = Tensor::zeros(e, &[6], DType::F32).unwrap();
    e.copy_region(&src, 1, &log, 2, 2).unwrap();
    // A kernel after the copy sees the copied values.
    let doubled = ew::affine(&log, 2.0, 0.0).unwrap();
    assert_eq!(
        doubled.to_vec::<f32>().unwrap(),
        [0.0, 0.0, 4.0, 6.0, 0.0, 0.0]
    );
    assert!(matches!(
        e.copy_region(&src, 3, &log, 0, 2),
        Err(Error::BadInput { .. })
    ));
    let u = Tensor::zeros(e, &[4], DType::U32).unwrap();
    assert!(matches!(
        e.copy_region(&src, 0, &u, 0, 1),
        Err(Error::DTypeMismatch { .. })
    ));
}

#[test]
fn an_engine_on_a_host_device_keeps_the_loop_limit_guard() {
    let Some(e) = crate::portable_engine() else {
        return;
    };
    let main = crate::engine().expect("engine");
    if main.max_loop_iterations().is_none() {
        eprintln!(
            "NOTE: {} has no loop limit; checking only that the host engine agrees",
            main.summary()
        );
        assert_eq!(e.max_loop_iterations(), None);
        return;
    }
    assert_eq!(e.max_loop_iterations(), main.max_loop_iterations());
    // [1, 70000]·[70000, 1] of ones: lavapipe would stop at 65,535 and return that, with Ok.
    let a = Tensor::full(e, &[1, 70_000], 1.0).unwrap();
    let b = Tensor::full(e, &[70_000, 1], 1.0).unwrap();
    let r = latent::kernels::matmul::matmul(&a, &b).and_then(|c| c.to_vec::<f32>());
    assert!(matches!(r, Err(Error::BadInput { .. })), "{r:?}");
}

#[test]
fn tensors_of_another_engine_are_refused_everywhere() {
    let e1 = gpu!();
    let e2 = Engine::new().unwrap();
    let ones = Tensor::full(e1, &[2, 2], 1.0).unwrap();
    let twos = Tensor::full(&e2, &[2, 2], 2.0).unwrap();
    let mine = Tensor::zeros(e1, &[2, 2], DType::F32).unwrap();
    let foreign = |r: latent::Result<()>| {
        assert!(matches!(r, Err(Error::ForeignTensor { .. })), "{r:?}");
    };
    foreign(latent::kernels::matmul::matmul(&ones, &twos).map(drop));
    foreign(ew::unary_into(Unary::Neg, &twos, &mine));
    foreign(e1.copy(&twos, &mine));
    foreign(e1.copy(&mine, &twos));
    foreign(e1.copy_region(&twos, 0, &mine, 0, 1));
    foreign(e1.clear(&twos));
    // The engine's own tensors still work after the refusals.
    e1.copy(&ones, &mine).unwrap();
    assert_eq!(mine.to_vec::<f32>().unwrap(), [1.0; 4]);
}

#[test]
fn host_buffers_without_the_needed_usages_or_of_another_device_are_refused() {
    let e = gpu!();
    let make = |device: &wgpu::Device, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("host"),
            size: 64,
            usage,
            mapped_at_creation: false,
        })
    };
    use wgpu::BufferUsages as U;
    for (usage, missing) in [
        (U::STORAGE | U::COPY_DST, U::COPY_SRC),
        (U::STORAGE | U::COPY_SRC, U::COPY_DST),
        (U::COPY_SRC | U::COPY_DST, U::STORAGE),
    ] {
        match Tensor::from_buffer(e, make(e.device(), usage), &[16], DType::F32) {
            Err(Error::BufferUsage { missing: m, .. }) => assert_eq!(m, missing),
            other => panic!("usage {usage:?}: expected BufferUsage, got {other:?}"),
        }
    }
    let all = U::STORAGE | U::COPY_SRC | U::COPY_DST;
    // Another device of the same instance: wgpu's validation names the mismatch.
    latent::engine::quiet_headless_device_selection();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter =
        pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    let open = || pollster::block_on(adapter.request_device(&Default::default())).expect("device");
    let ((d1, q1), (d2, _)) = (open(), open());
    let host = Engine::from_device(&adapter, d1.clone(), q1);
    let r = Tensor::from_buffer(&host, make(&d2, all), &[16], DType::F32);
    assert!(matches!(r, Err(Error::ForeignBuffer { .. })), "{r:?}");
    assert!(Tensor::from_buffer(&host, make(&d1, all), &[16], DType::F32).is_ok());
    // A device of another instance (a fresh engine makes its own, holding only a few buffers):
    // wgpu cannot resolve the buffer there. The probe's wgpu panic message shows on stderr.
    let fresh = Engine::new().unwrap();
    let r = Tensor::from_buffer(&fresh, make(&d2, all), &[16], DType::F32);
    assert!(matches!(r, Err(Error::ForeignBuffer { .. })), "{r:?}");
}

#[test]
fn a_headless_run_prints_no_window_system_errors() {
    // A fresh process, so the adapter search runs again, without any display variables.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "engine::zeros_clears_a_reused_buffer",
            "--nocapture",
        ])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .env_remove("NODEVICE_SELECT")
        .output()
        .expect("run the test binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test: {stdout}"
    );
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR") && !stdout.contains("XDG_RUNTIME_DIR"),
        "window-system probing printed: {stderr}"
    );
}

#[test]
fn backend_names_are_parsed_strictly() {
    use latent::engine::parse_backends;
    assert_eq!(parse_backends("vulkan").unwrap(), wgpu::Backends::VULKAN);
    assert_eq!(
        parse_backends(" Vulkan , gl").unwrap(),
        wgpu::Backends::VULKAN | wgpu::Backends::GL
    );
    for bad in ["nonsense", "vulkan,nonsense", "vulkan,", "vulcan"] {
        match parse_backends(bad) {
            Err(e @ Error::UnknownBackend { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("vulkan, metal, dx12, gl"), "{msg}");
                assert!(!msg.contains("mesa-vulkan-drivers"), "{msg}");
            }
            other => panic!("{bad:?}: expected UnknownBackend, got {other:?}"),
        }
    }
}

#[test]
fn pool_drops_the_oldest_idle_buffers_beyond_its_cap() {
    let Some(_) = crate::engine() else { return };
    let e = Engine::new().unwrap();
    e.set_pool_cap(64 << 10);
    // Ten 16 KiB buffers freed: only the last four fit under 64 KiB.
    let ts: Vec<Tensor> = (0..10)
        .map(|_| Tensor::uninit(&e, &[4096], DType::F32).unwrap())
        .collect();
    drop(ts);
    assert_eq!(e.pool_stats().0, 64 << 10);
    let (_, created) = e.pool_stats();
    let _kept: Vec<Tensor> = (0..4)
        .map(|_| Tensor::uninit(&e, &[4096], DType::F32).unwrap())
        .collect();
    assert_eq!(
        e.pool_stats(),
        (0, created),
        "the four kept buffers are reused"
    );
    e.set_pool_cap(0);
    drop(_kept);
    assert_eq!(e.pool_stats().0, 0, "a zero cap keeps nothing");
}

#[test]
fn the_engine_says_which_matmul_kernels_it_runs_and_why() {
    let Some(portable) = crate::portable_engine() else {
        return;
    };
    let main = crate::engine().expect("engine");
    let wide = wgpu::Features::SUBGROUP | wgpu::Features::SHADER_INT64;
    // The portable engine's device was opened with no optional features.
    let choice = portable.kernel_choice();
    assert!(choice.contains("not wide"), "{choice}");
    assert!(portable.summary().contains(&choice));
    if main.features().contains(wide) {
        // The adapter offers them, so the host is told to request them.
        assert!(choice.contains("request it"), "{choice}");
        assert!(
            main.kernel_choice().starts_with("matmul: wide"),
            "{}",
            main.kernel_choice()
        );
    } else {
        eprintln!(
            "NOTE: {} lacks subgroups or int64; the wide kernels are not checked",
            main.summary()
        );
        assert!(
            choice.contains("lacks") || choice.contains("request it"),
            "{choice}"
        );
    }
}

#[test]
fn uploads_land_in_order_with_recorded_kernels_through_and_past_the_ring() {
    let e = gpu!();
    // Small (through the staging ring) and 3 Mi floats = 12 MiB (past the 8 MiB ring).
    for n in [1000usize, 3 << 20] {
        let a: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
        let b: Vec<f32> = (0..n).map(|i| -((i % 999) as f32)).collect();
        let t = Tensor::from_slice(e, &a, &[n]).unwrap();
        let before = ew::affine(&t, 2.0, 0.0).unwrap(); // recorded, reads a
        t.write_from_slice(&b).unwrap(); // must land after that kernel
        let after = ew::affine(&t, 2.0, 0.0).unwrap();
        let twice = |v: &[f32]| v.iter().map(|x| 2.0 * x).collect::<Vec<_>>();
        assert_eq!(before.to_vec::<f32>().unwrap(), twice(&a), "n {n}: before");
        assert_eq!(after.to_vec::<f32>().unwrap(), twice(&b), "n {n}: after");
    }
    // 3,000 live uploads of 4 KiB wrap the ring within one pending submission.
    let kept: Vec<Tensor> = (0..3000u32)
        .map(|i| Tensor::from_slice(e, &[i; 1024], &[1024]).unwrap())
        .collect();
    for (i, t) in kept.iter().enumerate().step_by(97) {
        assert_eq!(t.to_vec::<u32>().unwrap(), [i as u32; 1024]);
    }
}
