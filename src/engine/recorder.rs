//! Recording: kernels append dispatches to one pending encoder and compute pass; uniforms go
//! to one arena written once per submit; `flush` submits, `read_bytes` is the only host wait.

use super::BindingProblem;
use super::shader::{Binding, Shader, Slot};
use super::{Engine, Error, Result, Tensor};
use std::num::NonZeroU64;
use std::sync::Arc;

/// Uniform bytes one submission can hold; a full arena triggers a submit.
const ARENA_BYTES: u64 = 1 << 20;
/// Dispatches recorded before an automatic submit (bounds encoder memory and latency).
const MAX_PENDING: u32 = 2048;

/// Workgroup grid of a dispatch.
#[derive(Clone, Copy, Debug)]
pub enum Grid {
    /// `n` workgroups in total, folded into x·y(·z) when above the per-dimension limit; the
    /// shader recovers `wid = wg.x + wg.y·nwg.x + wg.z·nwg.x·nwg.y` and ignores `wid ≥ n`.
    Linear(u32),
    /// An explicit 3-D grid; each dimension must be within the device limit.
    Dims([u32; 3]),
}

/// Bind groups kept for reuse; past this many the cache starts over (a step uses ~100).
const MAX_BIND_GROUPS: usize = 4096;

/// Counts of GPU work, for "dispatches / submits / readbacks per step" reporting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub dispatches: u64,
    pub submits: u64,
    pub readbacks: u64,
    /// Host data written into tensors ([`crate::Tensor::from_slice`], `write_from_slice`).
    pub uploads: u64,
    /// Bind groups created; a replayed step finds every one of its own in the cache.
    pub bind_groups: u64,
    /// Bytes of kernel parameters written: only the bytes that changed since the last
    /// submission, so a replayed step writes only what moved (a counter, a seed).
    pub param_bytes: u64,
}

/// A bind group's identity: its pipeline and, per binding, the buffer range bound. Holding
/// the buffers keeps their addresses (and so the key) unique while the entry lives.
#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    pipeline: wgpu::ComputePipeline,
    ranges: Vec<(u32, wgpu::Buffer, u64, u64)>,
}

pub(crate) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Host image of the uniform arena for the pending submission.
    params: Vec<u8>,
    /// What the arena holds now (the bytes last written), so a submit writes only changes.
    written: Vec<u8>,
    arena: wgpu::Buffer,
    /// Bind groups by what they bind: a step recorded again with the same buffers (the pool
    /// hands them out in the same order) and the same parameter offsets reuses them all.
    groups: super::FastMap<GroupKey, wgpu::BindGroup>,
    /// The ranges of the key being looked up, kept between dispatches (no allocation on a hit).
    scratch: Vec<(u32, wgpu::Buffer, u64, u64)>,
    /// The pool's eviction count when `groups` was last checked: a cached group would keep
    /// an evicted buffer alive, so any eviction empties the cache.
    evictions: u64,
    align: usize,
    pending: u32,
    staging: Option<wgpu::Buffer>,
    pub(crate) stats: Stats,
    /// Per-kernel host-timed totals while profiling (see [`Engine::set_profiling`]).
    profile: Option<Vec<ProfileRow>>,
}

/// One kernel's share of a profiled run: `shader::entry`, launches and seconds in all.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRow {
    pub kernel: String,
    pub calls: u64,
    pub secs: f64,
}

/// Folds `n` workgroups into a grid whose dimensions stay within `max`.
pub fn fold(n: u32, max: u32) -> [u32; 3] {
    if n <= max {
        return [n, 1, 1];
    }
    let y = n.div_ceil(max);
    if y <= max {
        return [max, y, 1];
    }
    [max, max, y.div_ceil(max)]
}

impl Recorder {
    pub(crate) fn new(device: &wgpu::Device, limits: &wgpu::Limits) -> Recorder {
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("latent params"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Recorder {
            encoder: None,
            pass: None,
            params: Vec::new(),
            written: Vec::new(),
            arena,
            groups: Default::default(),
            scratch: Vec::new(),
            evictions: 0,
            align: limits.min_uniform_buffer_offset_alignment.max(16) as usize,
            pending: 0,
            staging: None,
            stats: Stats::default(),
            profile: None,
        }
    }

    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder
            .get_or_insert_with(|| device.create_command_encoder(&Default::default()))
    }

    fn pass(&mut self, device: &wgpu::Device) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let pass = self
                .encoder(device)
                .begin_compute_pass(&Default::default())
                .forget_lifetime();
            self.pass = Some(pass);
        }
        self.pass.as_mut().unwrap()
    }

    fn submit(&mut self, engine: &Engine) {
        self.pass = None;
        let Some(encoder) = self.encoder.take() else {
            return;
        };
        if let Some((from, to)) = changed(&self.written, &self.params) {
            let bytes = &self.params[from..to];
            engine
                .inner
                .queue
                .write_buffer(&self.arena, from as u64, bytes);
            self.stats.param_bytes += bytes.len() as u64;
            self.written.resize(self.written.len().max(to), 0);
            self.written[from..to].copy_from_slice(bytes);
        }
        self.params.clear();
        engine.inner.queue.submit([encoder.finish()]);
        self.pending = 0;
        self.stats.submits += 1;
    }
}

/// How a dispatch expects its entry point to use a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`: an input the kernel must not write.
    Read,
    /// `var<storage, read_write>`: an output (or an input updated in place).
    ReadWrite,
}

impl Access {
    fn wgsl(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::ReadWrite => "read_write",
        }
    }
}

/// One tensor of a dispatch, named by the WGSL variable it binds:
/// `&[Bind::read("x", &x), Bind::read("w", &w), Bind::write("y", &y)]`. The order of a
/// dispatch's list does not matter; the engine finds each binding by name.
#[derive(Clone, Copy, Debug)]
pub struct Bind<'a> {
    pub name: &'a str,
    pub tensor: &'a Tensor,
    pub access: Access,
    /// Bind a tensor of any 32-bit element type to a 32-bit integer view: kernels that move
    /// bits, never values (layout), say so with [`Bind::words`].
    pub words: bool,
}

impl<'a> Bind<'a> {
    /// `tensor` as the entry point's `var<storage, read>` named `name`.
    pub fn read(name: &'a str, tensor: &'a Tensor) -> Bind<'a> {
        Bind {
            name,
            tensor,
            access: Access::Read,
            words: false,
        }
    }

    /// `tensor` as the entry point's `var<storage, read_write>` named `name`.
    pub fn write(name: &'a str, tensor: &'a Tensor) -> Bind<'a> {
        Bind {
            access: Access::ReadWrite,
            ..Bind::read(name, tensor)
        }
    }

    /// Lets a 32-bit integer view (`u32`, `vec4<u32>`) carry the tensor's bits whatever its
    /// element type.
    pub fn words(self) -> Bind<'a> {
        Bind {
            words: true,
            ..self
        }
    }
}

impl Engine {
    /// Whether `other` is this engine (a clone of the same handle).
    pub(crate) fn same(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Records one kernel launch of `shader`'s `entry` (specialised with override `constants`).
    /// `tensors` name every storage buffer the entry point uses by its WGSL variable; each is
    /// checked against naga's reflection: a name it does not use, a used name left out, a name
    /// given twice, another access, an element type the view does not read, or a length that
    /// is not a whole number of the view's elements is an [`Error::Binding`] naming the entry
    /// point and the variable. `params` (any `Pod`) fills its uniform, if it has one.
    pub fn dispatch(
        &self,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        tensors: &[Bind],
        params: &[u8],
        grid: Grid,
    ) -> Result<()> {
        if let Some(b) = tensors.iter().find(|b| !b.tensor.engine().same(self)) {
            return self.check_owner(entry, &[b.tensor]);
        }
        let inner = &self.inner;
        let profiling = inner.rec.lock().unwrap().profile.is_some();
        if profiling {
            self.sync()?;
        }
        let pipe =
            inner
                .shaders
                .lock()
                .unwrap()
                .pipeline(&inner.device, shader, entry, constants)?;
        let bound = match_bindings(&pipe.bindings, tensors, params.len()).map_err(|problem| {
            Error::Binding {
                shader: shader.name,
                entry,
                problem,
            }
        })?;
        let limit = inner.limits.max_storage_buffer_binding_size;
        for b in tensors {
            if b.tensor.byte_len() > limit {
                return Err(Error::BindingTooLarge {
                    op: entry,
                    bytes: b.tensor.byte_len(),
                    limit,
                });
            }
        }
        let max = inner.limits.max_compute_workgroups_per_dimension;
        let dims = match grid {
            Grid::Linear(n) => fold(n, max),
            Grid::Dims(d) => {
                if d.iter().any(|&x| x > max) {
                    return Err(Error::bad(
                        entry,
                        format!("grid {d:?} exceeds {max} per dimension"),
                    ));
                }
                d
            }
        };
        if dims.contains(&0) {
            return Ok(());
        }

        let mut rec = inner.rec.lock().unwrap();
        let wants_params = !params.is_empty();
        let padded = params.len().div_ceil(16) * 16;
        let mut offset = rec.params.len().div_ceil(rec.align) * rec.align;
        if wants_params && (offset + padded) as u64 > ARENA_BYTES {
            rec.submit(self);
            offset = 0;
        }
        let arena = rec.arena.clone();
        let mut entries = Vec::with_capacity(pipe.bindings.len());
        for (b, t) in pipe.bindings.iter().zip(&bound) {
            let resource = match t {
                None => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &arena,
                    offset: offset as u64,
                    size: NonZeroU64::new(padded as u64),
                }),
                Some(t) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: t.buffer(),
                    offset: t.byte_offset(),
                    size: NonZeroU64::new(t.byte_len()),
                }),
            };
            entries.push(wgpu::BindGroupEntry {
                binding: b.index,
                resource,
            });
        }
        let mut ranges = std::mem::take(&mut rec.scratch);
        ranges.clear();
        ranges.extend(entries.iter().map(|e| match &e.resource {
            wgpu::BindingResource::Buffer(b) => (
                e.binding,
                b.buffer.clone(),
                b.offset,
                b.size.map_or(0, NonZeroU64::get),
            ),
            _ => unreachable!("the engine binds buffers only"),
        }));
        let key = GroupKey {
            pipeline: pipe.pipeline.clone(),
            ranges,
        };
        let evictions = inner.pool.lock().unwrap().evictions;
        if rec.evictions != evictions || rec.groups.len() >= MAX_BIND_GROUPS {
            rec.groups.clear();
            rec.evictions = evictions;
        }
        let bind_group = match rec.groups.get(&key) {
            Some(g) => {
                let g = g.clone();
                rec.scratch = key.ranges;
                rec.scratch.clear();
                g
            }
            None => {
                let g = inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(entry),
                    layout: &pipe.layout,
                    entries: &entries,
                });
                rec.stats.bind_groups += 1;
                rec.groups.insert(key, g.clone());
                g
            }
        };
        if wants_params {
            rec.params.resize(offset, 0);
            rec.params.extend_from_slice(params);
            rec.params.resize(offset + padded, 0);
        }
        let pass = rec.pass(&inner.device);
        pass.set_pipeline(&pipe.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(dims[0], dims[1], dims[2]);
        rec.stats.dispatches += 1;
        rec.pending += 1;
        if profiling {
            let start = std::time::Instant::now();
            rec.submit(self);
            drop(rec);
            self.wait()?;
            let secs = start.elapsed().as_secs_f64();
            let kernel = format!("{}::{entry}", shader.name);
            let mut rec = inner.rec.lock().unwrap();
            let rows = rec.profile.as_mut().expect("profiling is on");
            match rows.iter_mut().find(|r| r.kernel == kernel) {
                Some(r) => {
                    r.calls += 1;
                    r.secs += secs;
                }
                None => rows.push(ProfileRow {
                    kernel,
                    calls: 1,
                    secs,
                }),
            }
        } else if rec.pending >= MAX_PENDING {
            rec.submit(self);
        }
        Ok(())
    }

    /// Turns per-kernel profiling on (clearing earlier totals) or off. While on, every
    /// dispatch is submitted alone and waited for, and its host-measured time (execution plus
    /// submission) is added to its kernel's row: slow, but it shows where a step's time goes.
    pub fn set_profiling(&self, on: bool) -> Result<()> {
        self.sync()?;
        self.inner.rec.lock().unwrap().profile = on.then(Vec::new);
        Ok(())
    }

    /// The profile gathered since [`Engine::set_profiling`], most expensive kernel first.
    pub fn profile(&self) -> Vec<ProfileRow> {
        let mut rows = self
            .inner
            .rec
            .lock()
            .unwrap()
            .profile
            .clone()
            .unwrap_or_default();
        rows.sort_by(|a, b| b.secs.total_cmp(&a.secs));
        rows
    }

    /// Records a zero fill of `t` (ordered with the kernels around it).
    pub fn clear(&self, t: &Tensor) -> Result<()> {
        self.check_owner("clear", &[t])?;
        let mut rec = self.inner.rec.lock().unwrap();
        rec.encoder(&self.inner.device).clear_buffer(
            t.buffer(),
            t.byte_offset(),
            Some(t.byte_len()),
        );
        Ok(())
    }

    /// Records a copy of `src` into `dst` (same dtype and number of elements).
    pub fn copy(&self, src: &Tensor, dst: &Tensor) -> Result<()> {
        self.check_owner("copy", &[src, dst])?;
        dst.expect_dtype("copy", src.dtype())?;
        if src.numel() != dst.numel() {
            return Err(Error::ShapeMismatch {
                op: "copy",
                lhs: src.shape().to_vec(),
                rhs: dst.shape().to_vec(),
            });
        }
        self.copy_region(src, 0, dst, 0, src.numel())
    }

    /// Records a copy of `len` elements from `src` at element `src_at` into `dst` at `dst_at`
    /// (same dtype; e.g. logging a step's loss into a per-epoch buffer without a readback).
    pub fn copy_region(
        &self,
        src: &Tensor,
        src_at: usize,
        dst: &Tensor,
        dst_at: usize,
        len: usize,
    ) -> Result<()> {
        self.check_owner("copy_region", &[src, dst])?;
        if src.dtype() != dst.dtype() {
            return Err(Error::DTypeMismatch {
                op: "copy_region",
                expected: src.dtype().name(),
                got: dst.dtype().name(),
            });
        }
        if src_at + len > src.numel() || dst_at + len > dst.numel() {
            return Err(Error::bad(
                "copy_region",
                format!(
                    "{len} elements from {src_at} of {:?} to {dst_at} of {:?} run past an end",
                    src.shape(),
                    dst.shape()
                ),
            ));
        }
        if len > 0 && src.same_buffer(dst) {
            // wgpu refuses a copy within one buffer (two views of one arena): go through a
            // scratch tensor.
            let scratch = Tensor::uninit(self, &[len], src.dtype())?;
            self.copy_region(src, src_at, &scratch, 0, len)?;
            return self.copy_region(&scratch, 0, dst, dst_at, len);
        }
        let mut rec = self.inner.rec.lock().unwrap();
        rec.encoder(&self.inner.device).copy_buffer_to_buffer(
            src.buffer(),
            src.byte_offset() + 4 * src_at as u64,
            dst.buffer(),
            dst.byte_offset() + 4 * dst_at as u64,
            4 * len as u64,
        );
        Ok(())
    }

    /// Submits everything recorded so far without waiting.
    pub fn flush(&self) -> Result<()> {
        self.inner.rec.lock().unwrap().submit(self);
        self.check_fault()
    }

    /// Submits and waits until the device has finished all work.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait()
    }

    fn wait(&self) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(e.to_string()))?;
        self.check_fault()
    }

    /// Copies the bytes of `t` (its range of its buffer) to the host: submits pending work
    /// and waits for it.
    pub(crate) fn read_bytes(&self, t: &Tensor) -> Result<Vec<u8>> {
        let len = t.byte_len();
        let mut rec = self.inner.rec.lock().unwrap();
        let size = super::pool::size_class(len);
        if rec.staging.as_ref().is_none_or(|s| s.size() < size) {
            rec.staging = Some(self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("latent readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let staging = rec.staging.clone().unwrap();
        rec.encoder(&self.inner.device).copy_buffer_to_buffer(
            t.buffer(),
            t.byte_offset(),
            &staging,
            0,
            len,
        );
        rec.submit(self);
        rec.stats.readbacks += 1;
        let (tx, rx) = std::sync::mpsc::channel();
        let slice = staging.slice(..len);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::DeviceLost("readback callback dropped".into()))?
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("readback mapping failed: {e:?}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Counters since the engine was made (or since [`Engine::reset_stats`]).
    pub fn stats(&self) -> Stats {
        self.inner.rec.lock().unwrap().stats
    }

    /// Bytes of every tensor buffer the engine has created: device memory held by tensors
    /// and the pool grows only when this does (a replayed step creates none).
    pub fn allocated_bytes(&self) -> u64 {
        self.inner.pool.lock().unwrap().created_bytes
    }

    pub fn reset_stats(&self) {
        self.inner.rec.lock().unwrap().stats = Stats::default();
    }
}

/// The byte range `[from, to)` (4-byte aligned) where `new` differs from `old`, the bytes the
/// buffer holds now; bytes past `old`'s end count as changed. `None` when nothing changed.
fn changed(old: &[u8], new: &[u8]) -> Option<(usize, usize)> {
    let same = |i: usize| old.get(i) == Some(&new[i]);
    let from = (0..new.len()).find(|&i| !same(i))?;
    let to = (from..new.len())
        .rev()
        .find(|&i| !same(i))
        .map_or(from, |i| i + 1);
    Some((
        from / 4 * 4,
        to.next_multiple_of(4).min(new.len().next_multiple_of(4)),
    ))
}

/// Pairs each used binding (in binding order) with its tensor, `None` for the params uniform,
/// after checking `tensors` and `params_len` against the reflection.
fn match_bindings<'t>(
    bindings: &[Binding],
    tensors: &[Bind<'t>],
    params_len: usize,
) -> std::result::Result<Vec<Option<&'t Tensor>>, BindingProblem> {
    let storage = || bindings.iter().filter(|b| b.slot != Slot::Uniform);
    let used = || storage().map(|b| b.name.clone()).collect::<Vec<_>>();
    for (i, t) in tensors.iter().enumerate() {
        if tensors[..i].iter().any(|u| u.name == t.name) {
            return Err(BindingProblem::Duplicate {
                variable: t.name.to_string(),
            });
        }
        let Some(b) = storage().find(|b| b.name == t.name) else {
            return Err(BindingProblem::Unused {
                variable: t.name.to_string(),
                used: used(),
            });
        };
        let access = match b.slot {
            Slot::ReadWrite => Access::ReadWrite,
            _ => Access::Read,
        };
        if access != t.access {
            return Err(BindingProblem::Access {
                variable: t.name.to_string(),
                declared: access.wgsl(),
                requested: t.access.wgsl(),
            });
        }
        let dtype = t.tensor.dtype();
        let fits = b.view.dtype == Some(dtype) || (t.words && b.view.words);
        if !fits {
            return Err(BindingProblem::ElementType {
                variable: t.name.to_string(),
                view: b.view.wgsl.clone(),
                reads: b.view.dtype.map_or("no tensor type", |d| d.name()),
                got: dtype.name(),
            });
        }
        if !t.tensor.byte_len().is_multiple_of(b.view.bytes) {
            return Err(BindingProblem::Length {
                variable: t.name.to_string(),
                view: b.view.wgsl.clone(),
                view_bytes: b.view.bytes,
                bytes: t.tensor.byte_len(),
            });
        }
        // Views of one buffer may both be written when their bytes are disjoint; wgpu refuses
        // any read-only binding of a buffer that a dispatch writes.
        let clash = |u: &Bind| {
            u.tensor.overlaps(t.tensor)
                || (u.access == Access::Read && u.tensor.same_buffer(t.tensor))
        };
        if t.access == Access::ReadWrite
            && let Some(u) = tensors.iter().find(|u| u.name != t.name && clash(u))
        {
            return Err(BindingProblem::Aliased {
                variable: t.name.to_string(),
                other: u.name.to_string(),
            });
        }
    }
    if let Some(b) = storage().find(|b| !tensors.iter().any(|t| t.name == b.name)) {
        return Err(BindingProblem::Missing {
            variable: b.name.clone(),
            used: used(),
        });
    }
    let uniform = bindings.iter().find(|b| b.slot == Slot::Uniform);
    let expected = uniform.map_or(0, |b| b.view.bytes);
    // A host struct may carry padding up to the uniform's 16-byte size rounding, never more:
    // longer params mean the host and the shader disagree about the struct.
    let padded = expected.div_ceil(16) * 16;
    let got = params_len as u64;
    if (params_len == 0) != uniform.is_none() || got < expected || got > padded {
        return Err(BindingProblem::Params {
            expected,
            got: params_len as u64,
        });
    }
    Ok(bindings
        .iter()
        .map(|b| tensors.iter().find(|t| t.name == b.name).map(|t| t.tensor))
        .collect())
}
