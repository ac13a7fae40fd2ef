//! Uploads: host data goes through one staging ring into pooled buffers, by a copy recorded in
//! the pending encoder, so it is ordered with the kernels around it. Tested by `tests/uploads.rs`.

use super::{Engine, Result, Tensor};

/// Bytes of the staging ring; a larger upload is written straight into its destination.
const RING_BYTES: u64 = 8 << 20;

pub(crate) struct Ring {
    buffer: wgpu::Buffer,
    /// Next free byte; the bytes before it may be read by recorded, unsubmitted copies.
    cursor: u64,
}

impl Ring {
    pub(crate) fn new(device: &wgpu::Device) -> Ring {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("latent uploads"),
            size: RING_BYTES,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ring { buffer, cursor: 0 }
    }
}

impl Engine {
    /// Writes `data` into `dst` (its range of its buffer) from element 0, ordered after the work recorded so far.
    ///
    /// `queue.write_buffer` lands at the start of the next submission, before the pending
    /// kernels, so it may only target memory that no pending command uses: a fresh part of the
    /// ring, which a recorded copy then moves into `dst`. A full ring submits the pending work
    /// first (its copies are then in the queue, so the ring can start over). Data larger than
    /// the ring is written into `dst` directly after submitting the pending work.
    pub(crate) fn upload(&self, data: &[u8], dst: &Tensor) -> Result<()> {
        let len = data.len() as u64;
        self.inner.rec.lock().unwrap().stats.uploads += 1;
        let mut ring = self.inner.upload.lock().unwrap();
        if ring.cursor + len > RING_BYTES {
            self.flush()?;
            ring.cursor = 0;
        }
        if len > RING_BYTES {
            self.inner
                .queue
                .write_buffer(dst.buffer(), dst.byte_offset(), data);
            return Ok(());
        }
        let at = ring.cursor;
        self.inner.queue.write_buffer(&ring.buffer, at, data);
        // Copies need 4-byte alignment, and every element is 4 bytes.
        ring.cursor = (at + len).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let shape = [(RING_BYTES / 4) as usize];
        let staged = Tensor::wrap(self, ring.buffer.clone(), None, &shape, dst.dtype());
        self.copy_region(&staged, (at / 4) as usize, dst, 0, data.len() / 4)
    }
}
