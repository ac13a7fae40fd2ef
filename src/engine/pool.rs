//! Buffer pool: freed tensor buffers are kept by size class and handed to the next tensor of
//! that class, so a training step allocates nothing after its first run.

use std::collections::{BTreeMap, HashMap};

/// Usage of every pooled storage buffer.
pub(crate) const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Idle bytes kept by default: a W2 training step at batch 128 reuses a few hundred MiB.
pub(crate) const DEFAULT_CAP: u64 = 1 << 30;

pub(crate) struct Pool {
    /// Idle buffers by size class, each with the stamp of its return (oldest first).
    free: HashMap<u64, Vec<(u64, wgpu::Buffer)>>,
    /// (stamp, class) of every idle buffer: the oldest is evicted first.
    order: BTreeMap<u64, u64>,
    stamp: u64,
    /// Bytes held in `free`, at most `cap`.
    pub(crate) idle_bytes: u64,
    cap: u64,
    /// Buffers created (pool misses), for statistics.
    pub(crate) created: u64,
    /// Bytes of the buffers created, for statistics (device memory grows only with these).
    pub(crate) created_bytes: u64,
    /// Idle buffers dropped so far: caches holding buffers (bind groups) start over when
    /// this moves, so that a dropped buffer is really freed.
    pub(crate) evictions: u64,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            free: HashMap::new(),
            order: BTreeMap::new(),
            stamp: 0,
            idle_bytes: 0,
            cap: DEFAULT_CAP,
            created: 0,
            created_bytes: 0,
            evictions: 0,
        }
    }
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
    /// The most recently returned idle buffer of `class`.
    pub(crate) fn take(&mut self, class: u64) -> Option<wgpu::Buffer> {
        let (stamp, b) = self.free.get_mut(&class)?.pop()?;
        self.order.remove(&stamp);
        self.idle_bytes -= class;
        Some(b)
    }

    /// Keeps `buffer` for reuse, dropping the least recently returned buffers beyond the cap.
    pub(crate) fn give(&mut self, class: u64, buffer: wgpu::Buffer) {
        self.stamp += 1;
        self.order.insert(self.stamp, class);
        self.free
            .entry(class)
            .or_default()
            .push((self.stamp, buffer));
        self.idle_bytes += class;
        self.evict();
    }

    pub(crate) fn set_cap(&mut self, cap: u64) {
        self.cap = cap;
        self.evict();
    }

    fn evict(&mut self) {
        while self.idle_bytes > self.cap {
            let Some((_, class)) = self.order.pop_first() else {
                break;
            };
            // Stamps grow and `take` pops the newest, so a class's oldest buffer is its first.
            let list = self
                .free
                .get_mut(&class)
                .expect("ordered buffers are pooled");
            list.remove(0);
            self.idle_bytes -= class;
            self.evictions += 1;
        }
    }

    /// Drops every idle buffer.
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        self.order.clear();
        self.idle_bytes = 0;
        self.evictions += 1;
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
