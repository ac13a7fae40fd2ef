//! Uploads reuse pooled buffers and the pool stays within its cap: 10,000 uploads leave the
//! pool's idle bytes and the process RSS flat. Alone in its binary so no other test moves the
//! RSS. `cargo test --release --test uploads`.

mod common;

use latent::Tensor;

/// Resident set size of this process in bytes (Linux `/proc/self/status`).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn ten_thousand_uploads_keep_pool_and_rss_flat() {
    let Some(_) = common::engine() else { return };
    // A private engine: its pool holds only what this test frees.
    let e = latent::Engine::new().expect("engine");
    let data: Vec<f32> = (0..32 * 32).map(|i| i as f32).collect();
    let upload = |n: usize| {
        for i in 0..n {
            let t = Tensor::from_slice(&e, &data, &[32, 32]).expect("upload");
            if i % 1000 == 999 {
                assert_eq!(t.to_vec::<f32>().expect("readback"), data);
            }
        }
        e.sync().expect("sync");
    };
    // Warm-up past one turn of the 8 MiB upload ring, whose pages are touched as it fills.
    upload(2500);
    let (idle0, created0) = e.pool_stats();
    let rss0 = rss_bytes();
    upload(10_000);
    let (idle1, created1) = e.pool_stats();
    // One 4 KiB upload at a time: the freed buffer is reused, so the pool neither grows nor
    // creates buffers after the warm-up.
    assert_eq!(idle1, idle0, "idle pool bytes grew from {idle0} to {idle1}");
    assert_eq!(
        created1, created0,
        "uploads created buffers instead of reusing them"
    );
    // RSS margin 8 MiB: allocator and driver noise; the defect grew it by 60 MB (6 KB a call).
    match (rss0, rss_bytes()) {
        (Some(a), Some(b)) => {
            eprintln!(
                "RSS {:.1} -> {:.1} MiB over 10,000 uploads",
                a as f64 / 1048576.0,
                b as f64 / 1048576.0
            );
            assert!(
                b <= a + (8 << 20),
                "RSS grew from {} to {} MiB over 10,000 uploads",
                a >> 20,
                b >> 20
            )
        }
        _ => eprintln!("SKIPPED the RSS half: /proc/self/status is unreadable on this system"),
    }
}
