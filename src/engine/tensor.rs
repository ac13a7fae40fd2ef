//! GPU tensors: a byte range of a pooled storage buffer plus a contiguous row-major shape
//! (f32 or u32); views share a buffer. Tested by `kernels-tests/engine.rs` and
//! `kernels-tests/views.rs`.
//!
//! A tensor is usually a whole buffer; [`Tensor::view`] makes one that is a range of another
//! (an optimizer's arena of parameters), and a whole tensor can be *moved* into such a range
//! (`relocate`): every tensor of its storage, clones taken earlier included, then reads and
//! writes there, so no holder is left with a stale copy. Everything that binds, copies, clears
//! or reads a tensor goes through its [`Tensor::byte_offset`] and [`Tensor::byte_len`], never
//! the whole buffer.

use super::pool::{STORAGE_USAGE, size_class};
use super::{Engine, Error, Result};
use std::sync::{Arc, OnceLock};

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }
}

/// Host element types that map to a [`DType`].
pub trait Element: bytemuck::Pod {
    const DTYPE: DType;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}

/// The buffer behind one or more tensors; pooled buffers go back to the pool on drop.
pub(crate) struct Storage {
    buffer: Option<wgpu::Buffer>,
    /// Size class for pooled buffers; `None` for buffers owned by a host program.
    class: Option<u64>,
    /// Bytes of data the storage was made for (the buffer may be larger).
    bytes: u64,
    engine: Engine,
    /// An optimizer's arena ([`Tensor::arena`]): zero-filled, its bytes between and after the
    /// tensors moved into it are padding that nothing else holds.
    arena: bool,
    /// Set once when the data moved into a range of another buffer ([`Tensor::relocate`]):
    /// the tensor it moved to. The own buffer then went back to the pool.
    moved: OnceLock<Tensor>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if self.moved.get().is_some() {
            return;
        }
        if let (Some(class), Some(buffer)) = (self.class, self.buffer.take()) {
            self.engine.inner.pool.lock().unwrap().give(class, buffer);
        }
    }
}

/// A GPU tensor: `byte_len` bytes from `byte_offset` of a buffer. Cloning shares the buffer;
/// `reshape` and `view` are free.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    /// Bytes from the start of `storage`'s data (0 unless this is a view).
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor<{}>{:?}", self.dtype.name(), self.shape)
    }
}

fn numel_of(op: &'static str, shape: &[usize]) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::bad(op, format!("shape {shape:?} overflows")))?;
    if n == 0 {
        return Err(Error::EmptyTensor {
            op,
            shape: shape.to_vec(),
        });
    }
    Ok(n)
}

impl Engine {
    /// A pooled buffer of at least `bytes` bytes (contents undefined) and whether it is fresh
    /// (zero-filled by wgpu).
    fn alloc(&self, bytes: u64) -> Result<(wgpu::Buffer, u64, bool)> {
        let class = self.class_within_limit(bytes)?;
        if let Some(b) = self.inner.pool.lock().unwrap().take(class) {
            return Ok((b, class, false));
        }
        let b = self.create_buffer_checked(class)?;
        let mut pool = self.inner.pool.lock().unwrap();
        pool.created += 1;
        pool.created_bytes += class;
        drop(pool);
        Ok((b, class, true))
    }

    /// The size class of `bytes`, if the device can hold a buffer that large.
    fn class_within_limit(&self, bytes: u64) -> Result<u64> {
        let class = size_class(bytes);
        let limit = self.inner.limits.max_buffer_size;
        if class > limit {
            return Err(Error::BufferTooLarge { bytes, limit });
        }
        Ok(class)
    }

    /// Creates a storage buffer, turning an allocation failure into [`Error::OutOfMemory`].
    fn create_buffer_checked(&self, size: u64) -> Result<wgpu::Buffer> {
        let device = &self.inner.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("latent tensor"),
            size,
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        });
        if pollster::block_on(scope.pop()).is_some() {
            // A failed allocation may leave wgpu's in-flight memory to reclaim; free idle buffers.
            self.inner.pool.lock().unwrap().clear();
            return Err(Error::OutOfMemory { bytes: size });
        }
        Ok(buffer)
    }

    /// Errors unless every tensor belongs to this engine (a kernel or copy given tensors of
    /// two engines would bind buffers of another device, or of another pool).
    pub(crate) fn check_owner(&self, op: &'static str, tensors: &[&Tensor]) -> Result<()> {
        match tensors
            .iter()
            .all(|t| Arc::ptr_eq(&t.engine().inner, &self.inner))
        {
            true => Ok(()),
            false => Err(Error::ForeignTensor { op }),
        }
    }

    /// Whether `buffer` (with STORAGE usage) was created on this engine's device, probed by
    /// binding it: wgpu refuses a buffer of another device of the same instance with a
    /// validation error, and panics on one of another instance, whose id its registry does not
    /// hold. (An id that happens to name one of this instance's buffers passes unnoticed: wgpu
    /// offers no way to ask a buffer for its device.)
    fn owns_buffer(&self, buffer: &wgpu::Buffer) -> bool {
        let device = &self.inner.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("latent ownership probe"),
                entries: &[wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }],
            });
            drop(device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("latent ownership probe"),
                layout: &layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: buffer.as_entire_binding(),
                }],
            }));
        }));
        let refused = pollster::block_on(scope.pop()).is_some();
        probe.is_ok() && !refused
    }

    /// The alignment of a view's start, in elements: the device's storage-offset alignment,
    /// and at least 16 bytes so that a view can be read as `vec4`s.
    pub fn view_align(&self) -> usize {
        (self
            .inner
            .limits
            .min_storage_buffer_offset_alignment
            .max(16)
            / 4) as usize
    }

    /// Caps the bytes of idle buffers the pool keeps for reuse (default
    /// 1 GiB); returning a buffer beyond it drops the least recently returned ones.
    pub fn set_pool_cap(&self, bytes: u64) {
        self.inner.pool.lock().unwrap().set_cap(bytes);
    }

    /// Drops idle pooled buffers (memory held for reuse).
    pub fn trim_pool(&self) {
        self.inner.pool.lock().unwrap().clear();
    }

    /// Bytes currently idle in the buffer pool and the number of buffers ever created.
    pub fn pool_stats(&self) -> (u64, u64) {
        let p = self.inner.pool.lock().unwrap();
        (p.idle_bytes, p.created)
    }
}

impl Tensor {
    pub(super) fn wrap(
        engine: &Engine,
        buffer: wgpu::Buffer,
        class: Option<u64>,
        shape: &[usize],
        dtype: DType,
    ) -> Tensor {
        Self::build(engine, buffer, class, shape, dtype, false)
    }

    fn build(
        engine: &Engine,
        buffer: wgpu::Buffer,
        class: Option<u64>,
        shape: &[usize],
        dtype: DType,
        arena: bool,
    ) -> Tensor {
        Tensor {
            storage: Arc::new(Storage {
                buffer: Some(buffer),
                class,
                bytes: 4 * shape.iter().product::<usize>() as u64,
                engine: engine.clone(),
                arena,
                moved: OnceLock::new(),
            }),
            offset: 0,
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// A tensor with undefined contents, for kernels that overwrite every element.
    pub fn uninit(engine: &Engine, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n = numel_of("uninit", shape)?;
        let (buffer, class, _) = engine.alloc(4 * n as u64)?;
        Ok(Self::wrap(engine, buffer, Some(class), shape, dtype))
    }

    /// A tensor of zeros (recorded into the pending encoder, so it is ordered with kernels).
    pub fn zeros(engine: &Engine, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n = numel_of("zeros", shape)?;
        let (buffer, class, fresh) = engine.alloc(4 * n as u64)?;
        let t = Self::wrap(engine, buffer, Some(class), shape, dtype);
        if !fresh {
            engine.clear(&t)?;
        }
        Ok(t)
    }

    /// A flat f32 tensor of zeros `[numel]` that tensors are moved into ([`Tensor::relocate`])
    /// at aligned places, the zeros between them being padding ([`Tensor::arena_span`]).
    pub(crate) fn arena(engine: &Engine, numel: usize) -> Result<Tensor> {
        let shape = [numel];
        let n = numel_of("arena", &shape)?;
        let (buffer, class, fresh) = engine.alloc(4 * n as u64)?;
        let t = Self::build(engine, buffer, Some(class), &shape, DType::F32, true);
        if !fresh {
            engine.clear(&t)?;
        }
        Ok(t)
    }

    /// A tensor filled with `value`.
    pub fn full(engine: &Engine, shape: &[usize], value: f32) -> Result<Tensor> {
        let t = Tensor::uninit(engine, shape, DType::F32)?;
        crate::kernels::elementwise::fill(&t, value)?;
        Ok(t)
    }

    /// Uploads host data. `data.len()` must equal the product of `shape`.
    pub fn from_slice<T: Element>(engine: &Engine, data: &[T], shape: &[usize]) -> Result<Tensor> {
        let n = numel_of("from_slice", shape)?;
        if n != data.len() {
            return Err(Error::ShapeMismatch {
                op: "from_slice",
                lhs: vec![data.len()],
                rhs: shape.to_vec(),
            });
        }
        let (buffer, class, _) = engine.alloc(4 * n as u64)?;
        let t = Self::wrap(engine, buffer, Some(class), shape, T::DTYPE);
        engine.upload(bytemuck::cast_slice(data), &t)?;
        Ok(t)
    }

    /// Overwrites the tensor in place with host data (`data.len()` = `numel`, same dtype).
    ///
    /// The write is recorded in the pending encoder (through the upload ring), so it lands
    /// after the kernels already recorded and before the ones recorded next.
    pub fn write_from_slice<T: Element>(&self, data: &[T]) -> Result<()> {
        self.expect_dtype("write_from_slice", T::DTYPE)?;
        if data.len() != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "write_from_slice",
                lhs: vec![data.len()],
                rhs: self.shape.clone(),
            });
        }
        self.engine().upload(bytemuck::cast_slice(data), self)
    }

    /// Wraps a buffer owned by a host program, without a copy. Its usage must include
    /// `STORAGE | COPY_SRC | COPY_DST` (the engine binds, reads back, clears and copies into
    /// tensors) and it must come from the engine's device; otherwise a typed error names what
    /// is wrong. The buffer is not returned to the pool.
    pub fn from_buffer(
        engine: &Engine,
        buffer: wgpu::Buffer,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let n = numel_of("from_buffer", shape)?;
        if buffer.size() < 4 * n as u64 {
            return Err(Error::bad(
                "from_buffer",
                format!(
                    "buffer of {} bytes is too small for shape {shape:?}",
                    buffer.size()
                ),
            ));
        }
        let missing = STORAGE_USAGE - buffer.usage();
        if !missing.is_empty() {
            return Err(Error::BufferUsage {
                op: "from_buffer",
                usage: buffer.usage(),
                missing,
            });
        }
        if !engine.owns_buffer(&buffer) {
            return Err(Error::ForeignBuffer { op: "from_buffer" });
        }
        Ok(Self::wrap(engine, buffer, None, shape, dtype))
    }

    /// Reads the tensor back to the host (flushes pending work and waits: the only wait).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.expect_dtype("to_vec", T::DTYPE)?;
        let bytes = self.engine().read_bytes(self)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Same buffer, new shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = numel_of("reshape", shape)?;
        if n != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.shape.clone(),
                rhs: shape.to_vec(),
            });
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            offset: self.offset,
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// The elements `at..at + numel(shape)` of this tensor as a tensor of `shape`, sharing
    /// the buffer (no copy): writes through either show in both. `at` must put the view on a
    /// multiple of [`Engine::view_align`] elements from the buffer's start, so that kernels
    /// can bind it; otherwise, or past the end, [`Error::BadView`].
    pub fn view(&self, at: usize, shape: &[usize]) -> Result<Tensor> {
        let n = numel_of("view", shape)?;
        let align = self.engine().view_align();
        let start = self.byte_offset() / 4 + at as u64;
        if at.checked_add(n).is_none_or(|end| end > self.numel())
            || !start.is_multiple_of(align as u64)
        {
            return Err(Error::BadView {
                op: "view",
                at,
                len: n,
                numel: self.numel(),
                align,
            });
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            offset: self.offset + 4 * at as u64,
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// Moves this tensor's data into `to` (a view of the same dtype and element count, of a
    /// pooled buffer of this engine): the copy is recorded, and from then on every tensor of
    /// this storage (clones taken earlier, reshapes, views) reads and writes `to`'s range.
    /// The own buffer goes back to the pool. Only a whole pooled tensor can move, once;
    /// a host buffer ([`Tensor::from_buffer`]), a view, or a moved tensor is refused with
    /// [`Error::BadInput`] — callers keep those where they are.
    pub(crate) fn relocate(&self, to: &Tensor) -> Result<()> {
        const OP: &str = "relocate";
        self.engine().check_owner(OP, &[to])?;
        to.expect_dtype(OP, self.dtype)?;
        if to.numel() != self.numel() {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: self.shape.clone(),
                rhs: to.shape.clone(),
            });
        }
        let (Some(class), Some(own), true) = (
            self.storage.class,
            self.storage.buffer.clone(),
            self.movable(),
        ) else {
            return Err(Error::bad(OP, "only a whole pooled tensor can move"));
        };
        let (dst, _) = to.place();
        if Arc::ptr_eq(dst, &self.storage) || dst.class.is_none() {
            return Err(Error::bad(
                OP,
                "the destination must be another pooled buffer",
            ));
        }
        self.engine().copy(self, to)?;
        if self.storage.moved.set(to.clone()).is_err() {
            return Err(Error::bad(OP, "the tensor moved already"));
        }
        // The recorded copy reads `own` before any later command can write it: reuse is
        // ordered by the encoder, as for every buffer the pool hands out again.
        self.engine().inner.pool.lock().unwrap().give(class, own);
        Ok(())
    }

    /// When this tensor lies in an arena ([`Tensor::arena`]): the flat `[numel]` view from
    /// its first element, which may run past it over padding and later tensors of the arena
    /// (an optimizer's run over several parameters); `None` when the tensor is not in an
    /// arena or the span would pass the arena's end.
    pub(crate) fn arena_span(&self, numel: usize) -> Option<Tensor> {
        let (storage, offset) = self.place();
        let fits = offset + 4 * numel as u64 <= storage.bytes;
        (storage.arena && fits && numel > 0).then(|| Tensor {
            storage: storage.clone(),
            offset,
            shape: vec![numel],
            dtype: self.dtype,
        })
    }

    /// Whether [`Tensor::relocate`] can move this tensor: it is the whole of a pooled
    /// storage that has not moved.
    pub(crate) fn movable(&self) -> bool {
        let s = &self.storage;
        self.offset == 0
            && self.byte_len() == s.bytes
            && s.class.is_some()
            && s.moved.get().is_none()
    }

    /// The storage holding the data now and the byte offset of this tensor in it (following
    /// moves).
    fn place(&self) -> (&Arc<Storage>, u64) {
        let (mut s, mut at) = (&self.storage, self.offset);
        while let Some(t) = s.moved.get() {
            at += t.offset;
            s = &t.storage;
        }
        (s, at)
    }

    /// The same buffer and shape read as `dtype` (both are 4-byte words: a bit cast, for
    /// copies that move f32 and u32 values through one buffer).
    #[cfg(feature = "mpi")]
    pub(crate) fn bits_as(&self, dtype: DType) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            offset: self.offset,
            shape: self.shape.clone(),
            dtype,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data (the buffer may be larger).
    pub fn byte_len(&self) -> u64 {
        4 * self.numel() as u64
    }

    /// Where the data starts in [`Tensor::buffer`], in bytes: 0 for a tensor of its own, the
    /// view's place for a view (a multiple of the device's storage-offset alignment).
    pub fn byte_offset(&self) -> u64 {
        self.place().1
    }

    /// The underlying wgpu buffer (for a host program: bind it, copy it, draw from it). The
    /// tensor is its bytes `byte_offset..byte_offset + byte_len`, which may be a part of it
    /// (a view, or a parameter an optimizer moved into its arena): bind [`Tensor::binding`]
    /// rather than the whole buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.place()
            .0
            .buffer
            .as_ref()
            .expect("live storage has a buffer")
    }

    /// The tensor's bytes of [`Tensor::buffer`] as a binding resource.
    pub fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: self.buffer(),
            offset: self.byte_offset(),
            size: std::num::NonZeroU64::new(self.byte_len()),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.storage.engine
    }

    /// Whether two tensors share a buffer (their bytes may still be disjoint: see
    /// [`Tensor::overlaps`]).
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        self.buffer() == other.buffer()
    }

    /// Whether two tensors share a byte of one buffer.
    pub fn overlaps(&self, other: &Tensor) -> bool {
        let (a, b) = (self.byte_offset(), other.byte_offset());
        self.same_buffer(other) && a < b + other.byte_len() && b < a + self.byte_len()
    }

    /// Errors unless the dtype is `dtype`.
    pub fn expect_dtype(&self, op: &'static str, dtype: DType) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::DTypeMismatch {
                op,
                expected: dtype.name(),
                got: self.dtype.name(),
            });
        }
        Ok(())
    }

    /// Errors unless the shape is `shape`.
    pub fn expect_shape(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(Error::ShapeMismatch {
                op,
                lhs: self.shape.clone(),
                rhs: shape.to_vec(),
            });
        }
        Ok(())
    }
}
