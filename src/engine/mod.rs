//! The engine: one wgpu device and queue, a pipeline cache, a buffer pool and the pending
//! command encoder that every kernel records into. Tested by `kernels-tests/engine.rs`.

mod error;
mod pool;
mod recorder;
mod shader;
mod tensor;

pub use error::{BindingProblem, CheckpointProblem, DataProblem, Error, Result};
pub use recorder::{Access, Bind, Grid, ProfileRow, Stats, fold};
pub use shader::Shader;
pub(crate) use shader::shader;
pub use tensor::{DType, Element, Tensor};

use std::sync::{Arc, Mutex};

/// Features used when the adapter has them; none is required.
const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::SHADER_INT64)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

/// Handle to a GPU device with everything kernels need. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    pub(crate) features: wgpu::Features,
    info: Option<wgpu::AdapterInfo>,
    pub(crate) shaders: Mutex<shader::Cache>,
    pub(crate) pool: Mutex<pool::Pool>,
    pub(crate) rec: Mutex<recorder::Recorder>,
    /// First error reported by wgpu outside an error scope, or the device-lost reason.
    pub(crate) fault: Arc<Mutex<Option<Error>>>,
}

impl Engine {
    /// Picks an adapter and opens a device with the adapter's real limits.
    ///
    /// Preference: discrete GPU, integrated, virtual, then CPU (e.g. Mesa lavapipe); native
    /// backends before GL. `LATENT_BACKEND` (`vulkan`, `metal`, `dx12`, `gl`, comma list)
    /// restricts backends; `LATENT_ADAPTER` picks the first adapter whose name contains it.
    pub fn new() -> Result<Engine> {
        pollster::block_on(Self::new_async())
    }

    async fn new_async() -> Result<Engine> {
        let backends = match std::env::var("LATENT_BACKEND") {
            Ok(s) if !s.trim().is_empty() => wgpu::Backends::from_comma_list(&s),
            _ => wgpu::Backends::all(),
        };
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let mut adapters = instance.enumerate_adapters(backends).await;
        let wanted = std::env::var("LATENT_ADAPTER")
            .ok()
            .filter(|s| !s.is_empty());
        let seen: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        if let Some(w) = &wanted {
            let w = w.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&w));
        }
        adapters.sort_by_key(|a| rank(&a.get_info()));
        let Some(adapter) = adapters.into_iter().next() else {
            let detail = match (&wanted, seen.is_empty()) {
                (_, true) => format!("backends {backends:?} offered none"),
                (Some(w), false) => format!("none matches LATENT_ADAPTER={w}; found {seen:?}"),
                (None, false) => format!("found {seen:?}"),
            };
            return Err(Error::NoAdapter { detail });
        };
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("latent"),
                required_features: adapter.features() & OPTIONAL_FEATURES,
                required_limits: adapter.limits(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let engine = Self::build(device, queue, Some(info));
        // We own this device, so its uncaught errors and loss become our typed errors.
        let fault = engine.inner.fault.clone();
        engine
            .inner
            .device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let err = match e {
                    wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory { bytes: 0 },
                    other => Error::Gpu(other.to_string()),
                };
                fault.lock().unwrap().get_or_insert(err);
            }));
        let fault = engine.inner.fault.clone();
        engine
            .inner
            .device
            .set_device_lost_callback(move |reason, msg| {
                let mut f = fault.lock().unwrap();
                *f = Some(Error::DeviceLost(format!("{reason:?}: {msg}")));
            });
        Ok(engine)
    }

    /// Builds an engine on a device and queue owned by a host wgpu program (embedding).
    ///
    /// The host keeps its own uncaptured-error handler; limits and features are read from the
    /// device. Tensors made with [`Tensor::from_buffer`] use the host's buffers directly.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Engine {
        Self::build(device, queue, None)
    }

    fn build(device: wgpu::Device, queue: wgpu::Queue, info: Option<wgpu::AdapterInfo>) -> Engine {
        let limits = device.limits();
        let features = device.features();
        let rec = recorder::Recorder::new(&device, &limits);
        Engine {
            inner: Arc::new(Inner {
                device,
                queue,
                limits,
                features,
                info,
                shaders: Mutex::new(shader::Cache::default()),
                pool: Mutex::new(pool::Pool::default()),
                rec: Mutex::new(rec),
                fault: Arc::new(Mutex::new(None)),
            }),
        }
    }

    /// The wgpu device (for embedding: create buffers the engine can wrap).
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// The device limits in force.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// The optional features enabled on the device (subgroups, f16, timestamp queries).
    pub fn features(&self) -> wgpu::Features {
        self.inner.features
    }

    /// Adapter information, when the engine chose the adapter itself.
    pub fn adapter_info(&self) -> Option<&wgpu::AdapterInfo> {
        self.inner.info.as_ref()
    }

    /// One line describing the adapter, backend and what was enabled.
    pub fn summary(&self) -> String {
        let f = self.inner.features;
        let mut feats = Vec::new();
        for (flag, name) in [
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::SHADER_INT64, "int64"),
            (wgpu::Features::SHADER_F16, "f16"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamps"),
        ] {
            if f.contains(flag) {
                feats.push(name);
            }
        }
        let adapter = match &self.inner.info {
            Some(i) => format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type),
            None => "host-provided device".to_string(),
        };
        format!(
            "{adapter}; features: [{}]; max storage binding {} MiB",
            feats.join(", "),
            self.inner.limits.max_storage_buffer_binding_size >> 20
        )
    }

    /// The most loop iterations one invocation may run, when the driver imposes a limit:
    /// Mesa's llvmpipe (lavapipe) silently stops every invocation after 65,535 iterations
    /// of all its loops together, so kernels split longer runs.
    pub fn max_loop_iterations(&self) -> Option<u32> {
        let info = self.inner.info.as_ref()?;
        (info.driver.contains("llvmpipe") || info.name.contains("llvmpipe")).then_some(65_535)
    }

    /// Returns the first asynchronous GPU fault (validation, out of memory, device lost).
    pub(crate) fn check_fault(&self) -> Result<()> {
        match self.inner.fault.lock().unwrap().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Sort key: lower is better.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (backend, ty)
}
