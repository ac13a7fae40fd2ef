//! The engine: one wgpu device and queue, a pipeline cache, a buffer pool and the pending
//! command encoder that every kernel records into. Tested by `kernels-tests/engine.rs`.

mod error;
mod pool;
mod recorder;
mod shader;
mod tensor;
mod upload;

pub use error::{BindingProblem, CheckpointProblem, DataProblem, Error, FolderProblem, Result};
pub use recorder::{Access, Bind, Grid, ProfileRow, Stats, fold};
pub use shader::Shader;
pub(crate) use shader::shader;
pub use tensor::{DType, Element, Tensor};

use std::sync::{Arc, Mutex};

/// A fast hash for the engine's per-dispatch lookups (pipelines, bind groups): keys are a few
/// words and never chosen by an attacker, so SipHash's cost buys nothing here (FxHash's mix).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail) ^ bytes.len() as u64);
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn write_u32(&mut self, v: u32) {
        self.add(v as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

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
    /// What the adapter offers (the device may have been opened with less).
    adapter_features: wgpu::Features,
    info: wgpu::AdapterInfo,
    pub(crate) shaders: Mutex<shader::Cache>,
    pub(crate) pool: Mutex<pool::Pool>,
    pub(crate) upload: Mutex<upload::Ring>,
    pub(crate) rec: Mutex<recorder::Recorder>,
    /// First error reported by wgpu outside an error scope, or the device-lost reason.
    pub(crate) fault: Arc<Mutex<Option<Error>>>,
}

impl Engine {
    /// Picks an adapter and opens a device with the adapter's real limits.
    ///
    /// Preference: discrete GPU, integrated, virtual, then CPU (e.g. Mesa lavapipe); GL is
    /// searched only when no Vulkan, Metal or DX12 adapter exists. `LATENT_BACKEND` (`vulkan`,
    /// `metal`, `dx12`, `gl`, comma list; see [`parse_backends`]) restricts backends;
    /// `LATENT_ADAPTER` names an adapter by its index in that order (`0`, `1`, …) or picks the
    /// first whose name contains it. With the feature `mpi`, in a process started by `mpirun`,
    /// a name matching several adapters (or no `LATENT_ADAPTER`) picks among the best kind
    /// the one at the rank on this machine modulo their number: one GPU per rank.
    ///
    /// On Linux without a display (`XDG_RUNTIME_DIR` unset or not a folder) the first call sets
    /// `NODEVICE_SELECT=1`, unless it is set already, before creating its instance: Mesa's
    /// device-selection layer would otherwise ask Wayland for the display's GPU, which fails
    /// with an error message printed on every run; the engine ranks adapters itself.
    pub fn new() -> Result<Engine> {
        pollster::block_on(Self::new_async())
    }

    async fn new_async() -> Result<Engine> {
        let requested = match std::env::var("LATENT_BACKEND") {
            Ok(s) if !s.trim().is_empty() => Some(parse_backends(&s)?),
            _ => None,
        };
        quiet_headless_device_selection();
        // Native backends first; GL (which needs a window system) only as a fallback.
        let tries = match requested {
            Some(b) => vec![b],
            None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::GL],
        };
        let mut adapters = Vec::new();
        let mut backends = wgpu::Backends::empty();
        for b in tries {
            backends |= b;
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = b;
            adapters = wgpu::Instance::new(desc).enumerate_adapters(b).await;
            if !adapters.is_empty() {
                break;
            }
        }
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
        adapters.sort_by_key(|a| rank(&a.get_info()));
        let index = wanted
            .as_deref()
            .and_then(|w| w.trim().parse::<usize>().ok());
        match (index, &wanted) {
            (Some(i), _) if i < adapters.len() => adapters = vec![adapters.swap_remove(i)],
            (Some(_), _) => adapters.clear(),
            (None, Some(w)) => {
                let w = w.to_lowercase();
                adapters.retain(|a| a.get_info().name.to_lowercase().contains(&w));
            }
            (None, None) => {}
        }
        // One process per GPU: the rank on this machine picks among the adapters of the best
        // kind (a machine's GPUs, never its CPU driver beside them).
        #[cfg(feature = "mpi")]
        if let Some(r) = crate::ranks::get()
            && let Some(best) = adapters.first().map(|a| rank(&a.get_info()))
        {
            let peers = adapters
                .iter()
                .filter(|a| rank(&a.get_info()) == best)
                .count();
            adapters = vec![adapters.swap_remove(r.local_rank % peers)];
        }
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
                required_features: Self::wanted_features(&adapter),
                required_limits: adapter.limits(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let engine = Self::build(&adapter, device, queue);
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

    /// The optional features the fast kernels use that `adapter` offers: pass them as
    /// `required_features` when a host program opens its device for the engine (subgroups
    /// and 64-bit integers select the wide matmul; see [`Engine::kernel_choice`]).
    pub fn wanted_features(adapter: &wgpu::Adapter) -> wgpu::Features {
        adapter.features() & OPTIONAL_FEATURES
    }

    /// Builds an engine on a device and queue owned by a host wgpu program (embedding).
    ///
    /// `adapter` must be the one `device` was requested from: its information keeps every
    /// guard of [`Engine::new`] (the driver's loop limit, subgroup sizes) and explains the
    /// kernel choice. The host keeps its own uncaptured-error handler; limits and features are
    /// read from the device. Tensors made with [`Tensor::from_buffer`] use the host's buffers
    /// directly.
    pub fn from_device(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Engine {
        Self::build(adapter, device, queue)
    }

    fn build(adapter: &wgpu::Adapter, device: wgpu::Device, queue: wgpu::Queue) -> Engine {
        let limits = device.limits();
        let features = device.features();
        let rec = recorder::Recorder::new(&device, &limits);
        let upload = upload::Ring::new(&device);
        Engine {
            inner: Arc::new(Inner {
                device,
                queue,
                limits,
                features,
                adapter_features: adapter.features(),
                info: adapter.get_info(),
                shaders: Mutex::new(shader::Cache::default()),
                pool: Mutex::new(pool::Pool::default()),
                upload: Mutex::new(upload),
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

    /// Information on the adapter the device came from.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// Which matmul kernels this engine runs and why (the device's features decide; a host
    /// that opened its device without features the adapter offers is told which to request).
    pub fn kernel_choice(&self) -> String {
        use crate::kernels::{matmul_subgroup, matmul_wide};
        let wide = wgpu::Features::SUBGROUP | wgpu::Features::SHADER_INT64;
        let missing = wide - self.inner.features;
        let offered = missing & self.inner.adapter_features;
        let min = self.inner.info.subgroup_min_size;
        if matmul_wide::usable(self) {
            return format!(
                "matmul: wide (8-float loads and subgroup broadcasts; subgroups of {min} or more \
                 and int64 enabled)"
            );
        }
        let why = if !offered.is_empty() {
            format!(
                "the device was opened without {offered:?}, which the adapter offers: request it"
            )
        } else if !missing.is_empty() {
            format!("the adapter lacks {missing:?}")
        } else {
            format!("subgroups may hold only {min} invocations, the kernels need 8")
        };
        let kernel = match matmul_subgroup::usable(self) {
            true => "subgroup (4-float loads)",
            false => "portable (no subgroups)",
        };
        format!("matmul: {kernel}, not wide: {why}")
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
        let i = &self.inner.info;
        format!(
            "{} ({:?}, {:?}); features: [{}]; max storage binding {} MiB; {}",
            i.name,
            i.backend,
            i.device_type,
            feats.join(", "),
            self.inner.limits.max_storage_buffer_binding_size >> 20,
            self.kernel_choice()
        )
    }

    /// The most loop iterations one invocation may run, when the driver imposes a limit:
    /// Mesa's llvmpipe (lavapipe) silently stops every invocation after 65,535 iterations
    /// of all its loops together, so kernels split longer runs.
    pub fn max_loop_iterations(&self) -> Option<u32> {
        let info = &self.inner.info;
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

/// Backend names `LATENT_BACKEND` accepts.
pub const BACKEND_NAMES: &[&str] = &["vulkan", "metal", "dx12", "gl"];

/// Parses a comma list of backend names (case and spaces ignored); an unknown or empty name is
/// an error listing the valid ones.
pub fn parse_backends(list: &str) -> Result<wgpu::Backends> {
    let mut backends = wgpu::Backends::empty();
    for name in list.split(',').map(|n| n.trim().to_lowercase()) {
        backends |= match name.as_str() {
            "vulkan" => wgpu::Backends::VULKAN,
            "metal" => wgpu::Backends::METAL,
            "dx12" => wgpu::Backends::DX12,
            "gl" => wgpu::Backends::GL,
            _ => {
                return Err(Error::UnknownBackend {
                    name,
                    valid: BACKEND_NAMES,
                });
            }
        };
    }
    Ok(backends)
}

/// Turns off Mesa's device-selection layer when there is no Wayland session to ask (see
/// [`Engine::new`]); once, and never over a user's setting. A host program that makes its own
/// `wgpu::Instance` on a headless Linux machine calls it first to keep its runs free of the
/// "XDG_RUNTIME_DIR is invalid" lines.
pub fn quiet_headless_device_selection() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let headless =
            std::env::var_os("XDG_RUNTIME_DIR").is_none_or(|d| !std::path::Path::new(&d).is_dir());
        if cfg!(target_os = "linux") && headless && std::env::var_os("NODEVICE_SELECT").is_none() {
            // SAFETY: runs once, before this process's first engine creates a wgpu instance;
            // Rust's own environment accesses are serialised by std. A host program reading
            // the environment from C on another thread at this moment is the documented risk.
            unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
        }
    });
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
