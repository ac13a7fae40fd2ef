//! Buffer pool: freed tensor buffers are kept by size class and handed to the next tensor of
//! that class, so a training step allocates nothing after its first run.

use std::collections::HashMap;

/// Usage of every pooled storage buffer.
pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Bytes held in `free`.
    pub(crate) idle_bytes: u64,
    /// Buffers created (pool misses), for statistics.
    pub(crate) created: u64,
}

/// Rounds a request up to its size class: 256-byte steps up to 4 KiB, then 8 classes per
/// octave (at most 12.5 % slack), so near-equal sizes share buffers.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(4);
    if bytes <= 4096 {
        return bytes.div_ceil(256) * 256;
    }
    let octave = 63 - (bytes - 1).leading_zeros() as u64;
    let step = 1u64 << (octave - 3);
    bytes.div_ceil(step) * step
}

impl Pool {
    pub(crate) fn take(&mut self, class: u64) -> Option<wgpu::Buffer> {
        let b = self.free.get_mut(&class)?.pop()?;
        self.idle_bytes -= class;
        Some(b)
    }

    pub(crate) fn give(&mut self, class: u64, buffer: wgpu::Buffer) {
        self.idle_bytes += class;
        self.free.entry(class).or_default().push(buffer);
    }

    /// Drops every idle buffer.
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        self.idle_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_with_bounded_slack() {
        for bytes in [
            1u64,
            4,
            255,
            256,
            257,
            4096,
            4097,
            1 << 20,
            (1 << 20) + 1,
            123_456_789,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes, "{bytes} -> {c}");
            assert!(c.is_multiple_of(4));
            assert!(
                c < bytes + 256 || c as f64 <= bytes as f64 * 1.125,
                "{bytes} -> {c}"
            );
        }
    }
}
