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
        eprintln!("device cannot make a buffer above its binding limit; nothing to test");
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
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter =
        pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("device");
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
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

    let engine = Engine::from_device(device.clone(), queue.clone());
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
