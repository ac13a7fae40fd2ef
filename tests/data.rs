//! Data loading and batching: broken IDX files give typed errors naming the file, the real
//! Fashion-MNIST loads, epochs are seeded permutations. Run: `cargo test --release --test data`.

mod common;

use common::TempDir;
use flate2::Compression;
use flate2::write::GzEncoder;
use latent::data::{self, Batches, FashionMnist, idx};
use latent::optim::Examples;
use latent::{DataProblem, Error, FolderProblem};
use std::io::Write;
use std::path::Path;

/// IDX bytes: big-endian magic, dimensions, then the data.
fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Deterministic pixels covering 0..=255.
fn pixels(n: usize, side: usize) -> Vec<u8> {
    (0..n * side * side).map(|i| (i * 37 % 256) as u8).collect()
}

fn labels(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 10) as u8).collect()
}

/// Writes a small well-formed dataset: train gzipped, test raw (both spellings are accepted).
fn write_dataset(dir: &TempDir, n_train: usize, n_test: usize) {
    let images = |n| idx_bytes(idx::IMAGES_MAGIC, &[n as u32, 28, 28], &pixels(n, 28));
    let labels_of = |n| idx_bytes(idx::LABELS_MAGIC, &[n as u32], &labels(n));
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path(name), bytes).unwrap();
    write("train-images-idx3-ubyte.gz", &gzip(&images(n_train)));
    write("train-labels-idx1-ubyte.gz", &gzip(&labels_of(n_train)));
    write("t10k-images-idx3-ubyte", &images(n_test));
    write("t10k-labels-idx1-ubyte", &labels_of(n_test));
}

/// The data error of a load, with its file name, asserting that the message names the file.
fn data_error(dir: &TempDir) -> (String, DataProblem) {
    match FashionMnist::load_dir(&dir.0) {
        Err(e @ Error::Data { .. }) => {
            let msg = e.to_string();
            let Error::Data { path, problem } = e else {
                unreachable!()
            };
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(msg.contains(&name), "message must name the file: {msg}");
            (name, problem)
        }
        other => panic!("expected Error::Data, got {other:?}"),
    }
}

#[test]
fn a_small_dataset_loads_from_gzipped_and_raw_files() {
    let dir = TempDir::new("ok");
    write_dataset(&dir, 12, 5);
    let d = FashionMnist::load_dir(&dir.0).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (12, 5));
    assert_eq!(d.train.dims(), (28, 28));
    assert_eq!(d.train.images().len(), 12 * 784);
    // f32 pixels are exactly pixel / 255.
    let raw = pixels(12, 28);
    assert!(
        d.train
            .images()
            .iter()
            .zip(&raw)
            .all(|(&x, &p)| x == p as f32 / 255.0)
    );
    assert_eq!(d.train.images().iter().cloned().fold(0.0, f32::max), 1.0);
    assert_eq!(d.test.labels(), labels(5));
    assert_eq!(d.test.image(3), &d.test.images()[3 * 784..4 * 784]);
    let mut x = Vec::new();
    d.train.gather(&[4, 1], &mut x);
    assert_eq!(&x[..784], d.train.image(4));
    assert_eq!(&x[784..], d.train.image(1));
    let mut y = Vec::new();
    d.train.gather_labels(&[4, 1], &mut y);
    assert_eq!(y, [4, 1]);
    assert_eq!(d.class_names()[9], "Ankle boot");
    assert_eq!(d.dir, dir.0);
}

#[test]
fn truncated_gzip_is_a_typed_error_naming_the_file() {
    let dir = TempDir::new("trunc-gz");
    write_dataset(&dir, 12, 5);
    let path = dir.path("train-images-idx3-ubyte.gz");
    let gz = std::fs::read(&path).unwrap();
    std::fs::write(&path, &gz[..gz.len() - 20]).unwrap();
    let (name, problem) = data_error(&dir);
    assert_eq!(name, "train-images-idx3-ubyte.gz");
    assert!(matches!(problem, DataProblem::Gzip(_)), "{problem:?}");
}

#[test]
fn a_gzip_crc_mismatch_is_detected() {
    let dir = TempDir::new("crc");
    write_dataset(&dir, 12, 5);
    let path = dir.path("train-labels-idx1-ubyte.gz");
    let mut gz = std::fs::read(&path).unwrap();
    let crc = gz.len() - 8; // trailer: CRC-32, then the length
    gz[crc] ^= 0xff;
    std::fs::write(&path, &gz).unwrap();
    let (name, problem) = data_error(&dir);
    assert_eq!(name, "train-labels-idx1-ubyte.gz");
    assert!(matches!(problem, DataProblem::Gzip(_)), "{problem:?}");
}

#[test]
fn a_wrong_magic_number_is_a_typed_error() {
    let dir = TempDir::new("magic");
    write_dataset(&dir, 12, 5);
    // A label file where the test images should be.
    std::fs::copy(
        dir.path("t10k-labels-idx1-ubyte"),
        dir.path("t10k-images-idx3-ubyte"),
    )
    .unwrap();
    let (name, problem) = data_error(&dir);
    assert_eq!(name, "t10k-images-idx3-ubyte");
    assert!(
        matches!(
            problem,
            DataProblem::BadMagic {
                expected: 0x803,
                found: 0x801
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn truncated_and_trailing_data_are_typed_errors() {
    let dir = TempDir::new("lengths");
    write_dataset(&dir, 12, 5);
    let path = dir.path("t10k-images-idx3-ubyte");
    let full = std::fs::read(&path).unwrap();

    std::fs::write(&path, &full[..full.len() - 1]).unwrap();
    let (_, problem) = data_error(&dir);
    assert!(
        matches!(problem, DataProblem::Truncated { expected, found } if expected == found + 1),
        "{problem:?}"
    );

    std::fs::write(&path, &full[..10]).unwrap(); // inside the header
    let (_, problem) = data_error(&dir);
    assert!(
        matches!(
            problem,
            DataProblem::Truncated {
                expected: 16,
                found: 10
            }
        ),
        "{problem:?}"
    );

    let mut longer = full.clone();
    longer.extend([0, 0, 0]);
    std::fs::write(&path, &longer).unwrap();
    let (_, problem) = data_error(&dir);
    assert!(
        matches!(problem, DataProblem::TrailingData { extra: 3, .. }),
        "{problem:?}"
    );

    // The readers on their own: an empty file is truncated, not a panic.
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        idx::read_images(&path),
        Err(Error::Data {
            problem: DataProblem::Truncated { found: 0, .. },
            ..
        })
    ));
}

#[test]
fn an_image_label_count_mismatch_is_a_typed_error() {
    let dir = TempDir::new("count");
    write_dataset(&dir, 12, 5);
    let bytes = idx_bytes(idx::LABELS_MAGIC, &[4], &labels(4));
    std::fs::write(dir.path("t10k-labels-idx1-ubyte"), bytes).unwrap();
    let (name, problem) = data_error(&dir);
    assert_eq!(name, "t10k-labels-idx1-ubyte");
    assert!(
        matches!(
            problem,
            DataProblem::CountMismatch {
                images: 5,
                labels: 4,
                ..
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn images_that_are_not_28_by_28_are_a_typed_error() {
    let dir = TempDir::new("dims");
    write_dataset(&dir, 12, 5);
    let bytes = idx_bytes(idx::IMAGES_MAGIC, &[5, 27, 28], &vec![0; 5 * 27 * 28]);
    std::fs::write(dir.path("t10k-images-idx3-ubyte"), bytes).unwrap();
    let (_, problem) = data_error(&dir);
    assert!(
        matches!(
            problem,
            DataProblem::Dimensions {
                expected: [28, 28],
                found: [27, 28]
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn a_label_outside_the_ten_classes_is_a_typed_error() {
    let dir = TempDir::new("label");
    write_dataset(&dir, 12, 5);
    let bytes = idx_bytes(idx::LABELS_MAGIC, &[5], &[0, 1, 2, 10, 4]);
    std::fs::write(dir.path("t10k-labels-idx1-ubyte"), bytes).unwrap();
    let (_, problem) = data_error(&dir);
    assert!(
        matches!(
            problem,
            DataProblem::BadLabel {
                index: 3,
                label: 10,
                ..
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn a_missing_data_dir_says_how_to_get_the_data() {
    let dir = TempDir::new("missing");
    let nowhere = dir.path("no-such-folder");
    let err = FashionMnist::load_dir(&nowhere).unwrap_err();
    assert!(matches!(err, Error::DataMissing { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        "apt-get install dataset-fashion-mnist",
        "LATENT_DATA",
        "--data",
        "no-such-folder",
    ] {
        assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
    }

    // A folder with some of the files is an error about the first missing one.
    write_dataset(&dir, 12, 5);
    std::fs::remove_file(dir.path("t10k-labels-idx1-ubyte")).unwrap();
    match FashionMnist::load_dir(&dir.0) {
        Err(Error::DataMissing { file, .. }) => assert_eq!(file, "t10k-labels-idx1-ubyte"),
        other => panic!("expected DataMissing, got {other:?}"),
    }
}

#[test]
fn a_named_data_folder_is_used_or_refused_never_passed_over() {
    let dir = TempDir::new("named");
    write_dataset(&dir, 12, 5);
    let other = TempDir::new("named-env");
    // --data wins over LATENT_DATA, which wins over the system copy.
    let chosen = FashionMnist::resolve_from(Some(&dir.0), Some(other.0.as_os_str())).unwrap();
    assert_eq!(chosen, dir.0);
    assert_eq!(
        FashionMnist::resolve_from(None, Some(dir.0.as_os_str())).unwrap(),
        dir.0
    );

    // Missing, empty or not a folder: an error naming the folder and who named it.
    let nowhere = dir.path("no-such-folder");
    let refused = |d: Option<&Path>, env: Option<&Path>| {
        let err = FashionMnist::resolve_from(d, env.map(Path::as_os_str)).unwrap_err();
        let msg = err.to_string();
        match err {
            Error::DataFolder {
                dir,
                given_by,
                problem,
            } => {
                assert!(msg.contains(&*dir.to_string_lossy()), "{msg}");
                (given_by, problem)
            }
            other => panic!("expected DataFolder, got {other:?}"),
        }
    };
    let (by, problem) = refused(Some(&nowhere), Some(&dir.0));
    assert_eq!(by, "--data");
    assert!(matches!(problem, FolderProblem::Missing), "{problem:?}");
    let (by, problem) = refused(None, Some(&other.0));
    assert_eq!(by, data::DATA_ENV);
    assert!(matches!(problem, FolderProblem::Empty), "{problem:?}");
    let (_, problem) = refused(Some(&dir.path("t10k-images-idx3-ubyte")), None);
    assert!(matches!(problem, FolderProblem::NotAFolder), "{problem:?}");
    // load goes through the same check.
    assert!(matches!(
        FashionMnist::load(Some(&nowhere)),
        Err(Error::DataFolder { .. })
    ));

    // A broken copy in the named folder is reported, not passed over for another copy.
    std::fs::write(dir.path("train-labels-idx1-ubyte.gz"), b"\x1f\x8bnot gzip").unwrap();
    assert!(matches!(
        FashionMnist::load(Some(&dir.0)),
        Err(Error::Data {
            problem: DataProblem::Gzip(_),
            ..
        })
    ));
}

/// A gzip file whose stream is cut after its first `keep` bytes (of more than that): reading
/// it to the end fails, so a reader that reports anything else stopped before the end.
fn cut_gzip(bytes: &[u8], keep: usize) -> Vec<u8> {
    let gz = gzip(bytes);
    assert!(gz.len() > keep, "{} compressed bytes", gz.len());
    gz[..keep].to_vec()
}

#[test]
fn a_gzip_bomb_is_refused_after_the_bytes_its_header_promises() {
    let dir = TempDir::new("bomb");
    write_dataset(&dir, 12, 5);
    // The header promises 2 images (1,568 bytes); the stream inflates to 16 MiB.
    let mut bomb = idx_bytes(idx::IMAGES_MAGIC, &[2, 28, 28], &[]);
    bomb.resize(16 << 20, 7);
    let gz = gzip(&bomb);
    std::fs::write(dir.path("train-images-idx3-ubyte.gz"), &gz).unwrap();
    let (name, problem) = data_error(&dir);
    assert_eq!(name, "train-images-idx3-ubyte.gz");
    assert!(
        matches!(problem, DataProblem::Oversized { expected: 1584 }),
        "{problem:?}"
    );
    // Cut the stream halfway: the bomb is still refused as oversized, which proves the reader
    // stopped after the promised bytes (inflating to the end would meet the cut first).
    std::fs::write(dir.path("train-images-idx3-ubyte.gz"), &gz[..gz.len() / 2]).unwrap();
    let (_, problem) = data_error(&dir);
    assert!(
        matches!(problem, DataProblem::Oversized { expected: 1584 }),
        "{problem:?}"
    );
}

#[test]
fn a_wrong_magic_is_reported_before_the_rest_is_inflated() {
    let dir = TempDir::new("early-magic");
    write_dataset(&dir, 12, 5);
    // Wrong magic, then 1 MiB, the stream cut short: only a reader that stops after the
    // magic sees BadMagic rather than the broken stream.
    let mut bytes = idx_bytes(0x0000_0802, &[12, 28, 28], &[]);
    bytes.extend(pixels(1400, 28));
    let gz = cut_gzip(&bytes, 2000);
    std::fs::write(dir.path("train-images-idx3-ubyte.gz"), &gz).unwrap();
    let (_, problem) = data_error(&dir);
    assert!(
        matches!(
            problem,
            DataProblem::BadMagic {
                expected: idx::IMAGES_MAGIC,
                found: 0x0000_0802
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn the_identity_names_the_files_and_changes_with_their_contents() {
    let dir = TempDir::new("identity");
    write_dataset(&dir, 12, 5);
    let first = FashionMnist::load_dir(&dir.0).unwrap().identity();
    assert_eq!(FashionMnist::load_dir(&dir.0).unwrap().identity(), first);
    let raw_test = 16 + 5 * 28 * 28;
    for needle in [
        "train-images-idx3-ubyte.gz ".to_string(),
        format!("t10k-images-idx3-ubyte {raw_test} B"),
        "headers crc32 0x".into(),
        "data crc32 0x".into(),
    ] {
        assert!(first.contains(&needle), "`{needle}` missing from {first}");
    }
    // One pixel changed, same sizes and headers: the data checksum tells them apart.
    let path = dir.path("t10k-images-idx3-ubyte");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let changed = FashionMnist::load_dir(&dir.0).unwrap().identity();
    assert_ne!(changed, first);
    let headers = |s: &str| s.split("; ").nth(1).unwrap().to_string();
    assert_eq!(headers(&changed), headers(&first));
}

#[test]
fn the_real_fashion_mnist_loads() {
    if !Path::new(data::SYSTEM_DIR).exists()
        && std::env::var_os(data::DATA_ENV).is_none()
        && std::env::var_os("LATENT_SKIP_DATA_TESTS").is_some()
    {
        eprintln!("skipping: no Fashion-MNIST and LATENT_SKIP_DATA_TESTS is set");
        return;
    }
    let d = FashionMnist::load(None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((d.train.len(), d.test.len()), (60_000, 10_000));
    assert_eq!((d.train.dims(), d.test.dims()), ((28, 28), (28, 28)));
    assert_eq!(d.train.images().len(), 60_000 * data::PIXELS);
    for split in [&d.train, &d.test] {
        assert!(split.images().iter().all(|&x| (0.0..=1.0).contains(&x)));
        // Fashion-MNIST is balanced: every class holds a tenth of each split.
        let mut count = [0usize; 10];
        split.labels().iter().for_each(|&l| count[l as usize] += 1);
        assert_eq!(count, [split.len() / 10; 10]);
    }
    // The first image of each split is an ankle boot (label 9), as in the published files.
    assert_eq!((d.train.labels()[0], d.test.labels()[0]), (9, 9));
    assert_eq!(Batches::new(d.train.len(), 128, 0).unwrap().len(), 469);
}

#[test]
fn each_epoch_visits_every_index_exactly_once() {
    for (n, b) in [(1000, 128), (60_000, 128), (7, 7), (5, 8)] {
        let batches = Batches::new(n, b, 42).unwrap();
        let epoch = batches.epoch(0);
        let mut seen: Vec<usize> = epoch.iter().flatten().copied().collect();
        assert_eq!(seen.len(), n);
        seen.sort_unstable();
        assert!(
            seen.iter().enumerate().all(|(i, &s)| i == s),
            "n {n}, b {b}"
        );
        assert!(epoch.iter().all(|batch| batch.len() <= b));
    }
}

#[test]
fn sixty_thousand_images_at_128_are_469_batches_with_the_partial_one_kept() {
    let batches = Batches::new(60_000, 128, 1).unwrap();
    assert_eq!(batches.len(), 469);
    let epoch = batches.epoch(0);
    assert_eq!(epoch.iter().len(), 469);
    assert_eq!(epoch.batch(468).len(), 60_000 - 468 * 128);
    let dropped = batches.clone().drop_last(true);
    assert_eq!(dropped.len(), 468);
    assert!(dropped.epoch(0).iter().all(|b| b.len() == 128));
    assert!(Batches::new(0, 128, 1).is_err());
    assert!(Batches::new(10, 0, 1).is_err());
}

#[test]
fn the_same_seed_and_epoch_give_the_same_order_and_epochs_differ() {
    let a = Batches::new(1000, 100, 7).unwrap();
    let b = Batches::new(1000, 100, 7).unwrap();
    // Epoch 5 on its own (as a resumed run computes it) equals epoch 5 after epochs 0..5.
    (0..5).for_each(|e| drop(a.epoch(e)));
    assert_eq!(a.epoch(5).order(), b.epoch(5).order());
    assert_ne!(a.epoch(5).order(), a.epoch(6).order());
    let c = Batches::new(1000, 100, 8).unwrap();
    assert_ne!(a.epoch(5).order(), c.epoch(5).order());
    assert_ne!(
        a.epoch(0).order(),
        (0..1000).collect::<Vec<_>>(),
        "shuffled"
    );
    // Resuming at step 3 sees the same batches as the uninterrupted run.
    let (uninterrupted, resumed) = (a.epoch(5), b.epoch(5));
    let full: Vec<&[usize]> = uninterrupted.iter().collect();
    let resumed: Vec<&[usize]> = resumed.iter().skip(3).collect();
    assert_eq!(&full[3..], &resumed[..]);
}

#[test]
fn the_parts_of_an_epoch_make_up_its_batches_binarised_as_the_whole() {
    // 10 batches of 13 and a last one of 2, cut among 3 ranks: parts of 4, 4, 5 rows (0, 1, 1
    // in the last), in order, binarised on the GPU with the whole batch's draws. 3×3 images:
    // a part's first pixel is often not on a 4-draw Philox block, which takes the other path.
    let e = gpu!();
    let n = 132;
    let images: Vec<f32> = (0..n * 9).map(|i| (i % 97) as f32 / 97.0).collect();
    let split = data::Split::new(images, vec![0; n], 3, 3).unwrap();
    let batches = Batches::new(n, 13, 5).unwrap().binarize(true);
    let whole = batches.epoch(2);
    let parts: Vec<_> = (0..3).map(|r| batches.epoch(2).part(r, 3)).collect();
    for step in 0..whole.len() {
        let all = split.batch(e, &whole, step).unwrap();
        let pixels = all.x.to_vec::<f32>().unwrap();
        assert!(pixels.iter().all(|&v| v == 0.0 || v == 1.0));
        let (mut joined, mut joined_pixels) = (Vec::<usize>::new(), Vec::new());
        for (r, part) in parts.iter().enumerate() {
            let (row, rows) = part.share(step);
            assert_eq!((row, rows), (r * all.indices.len() / 3, all.indices.len()));
            if part.batch(step).is_empty() {
                continue; // a rank without rows in this batch uploads nothing
            }
            let own = split.batch(e, part, step).unwrap();
            assert_eq!(own.x.numel(), part.batch(step).len() * 9);
            joined.extend(own.indices);
            joined_pixels.extend(own.x.to_vec::<f32>().unwrap());
        }
        assert_eq!(joined, all.indices, "step {step}");
        assert_eq!(joined_pixels, pixels, "step {step}");
    }
}

/// An 8-bit split of `n` images of `side`×`side` pixels, labelled `i % 10`: pixels v/255 as the
/// loader makes them.
fn byte_split(n: usize, side: usize) -> data::Split {
    let images = pixels(n, side).iter().map(|&v| v as f32 / 255.0).collect();
    data::Split::new(images, labels(n), side, side).unwrap()
}

#[test]
fn device_split_batches_are_the_splits_bit_for_bit_whole_and_in_parts() {
    // 10 batches of 13 and a last one of 2; parts of 3 ranks; 3×3 images, so a part's first
    // pixel is often inside a 4-draw Philox block. Epochs 0 and 2, binarised or not.
    let e = gpu!();
    let n = 132;
    let split = byte_split(n, 3);
    let device = data::DeviceSplit::new(e, &split).unwrap();
    assert_eq!((device.count(), device.dims()), (n, (3, 3)));
    for binarize in [false, true] {
        let batches = Batches::new(n, 13, 5).unwrap().binarize(binarize);
        for epoch in [0, 2] {
            let whole = batches.epoch(epoch);
            let parts = (0..3).map(|r| batches.epoch(epoch).part(r, 3));
            for order in std::iter::once(whole).chain(parts) {
                device.start_epoch(e, &order).unwrap();
                for step in 0..order.len() {
                    if order.batch(step).is_empty() {
                        continue; // a rank without rows in this batch: no tensor
                    }
                    let host = split.batch(e, &order, step).unwrap();
                    let dev = device.batch(e, &order, step).unwrap();
                    let bits = |t: &latent::Tensor| -> Vec<u32> {
                        t.to_vec::<f32>()
                            .unwrap()
                            .iter()
                            .map(|x| x.to_bits())
                            .collect()
                    };
                    let at = format!("binarize {binarize}, epoch {epoch}, step {step}");
                    assert_eq!(dev.x.shape(), host.x.shape(), "{at}");
                    assert_eq!(bits(&dev.x), bits(&host.x), "{at}");
                    assert_eq!((dev.labels, dev.indices), (host.labels, host.indices));
                }
            }
        }
    }
}

#[test]
fn device_split_uploads_each_epochs_order_once() {
    let e = gpu!();
    let split = byte_split(20, 2);
    let device = data::DeviceSplit::new(e, &split).unwrap();
    let batches = Batches::new(20, 6, 1).unwrap();
    let (first, second) = (batches.epoch(0), batches.epoch(1));
    let a = device.order(e, &first).unwrap();
    assert!(device.order(e, &first).unwrap().same_buffer(&a));
    assert!(
        device
            .order(e, &first.clone().part(1, 2))
            .unwrap()
            .same_buffer(&a)
    );
    let b = device.order(e, &second).unwrap();
    assert!(!b.same_buffer(&a));
    let want: Vec<u32> = second.order().iter().map(|&i| i as u32).collect();
    assert_eq!(b.to_vec::<u32>().unwrap(), want);
    // An epoch of another data set's size is refused.
    let other = Batches::new(21, 6, 1).unwrap().epoch(0);
    match device.batch(e, &other, 0) {
        Err(Error::ShapeMismatch { lhs, rhs, .. }) => assert_eq!((lhs, rhs), (vec![21], vec![20])),
        r => panic!("expected a shape mismatch, got {:?}", r.map(|b| b.indices)),
    }
}

#[test]
fn device_split_refuses_pixels_that_are_not_8_bit() {
    let e = gpu!();
    let mut images: Vec<f32> = pixels(3, 2).iter().map(|&v| v as f32 / 255.0).collect();
    // A multiply by 1/255 is off by one bit for some levels: not what the loader stores.
    let k = (0..=255u8)
        .find(|&v| v as f32 * (1.0 / 255.0) != v as f32 / 255.0)
        .unwrap();
    images[5] = k as f32 * (1.0 / 255.0);
    images[7] = 0.5;
    let split = data::Split::new(images, labels(3), 2, 2).unwrap();
    match data::DeviceSplit::new(e, &split) {
        Err(Error::NotEightBit { index, .. }) => assert_eq!(index, 5),
        Err(other) => panic!("expected NotEightBit, got {other}"),
        Ok(_) => panic!("accepted a pixel that is no byte"),
    }
}

/// Above the device's storage-binding limit the split is refused before any upload, naming
/// the bytes and the limit (an engine opened with a 4 KiB limit stands for a small device).
#[test]
fn device_split_above_the_binding_limit_is_a_typed_error() {
    gpu!();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: wgpu::Limits {
            max_storage_buffer_binding_size: 4096,
            ..wgpu::Limits::downlevel_defaults()
        },
        ..Default::default()
    }))
    .unwrap();
    let small = latent::Engine::from_device(&adapter, device, queue);
    let split = byte_split(6, 28); // 4,704 bytes
    match data::DeviceSplit::new(&small, &split) {
        Err(Error::BindingTooLarge { bytes, limit, .. }) => {
            assert_eq!((bytes, limit), (4704, 4096))
        }
        Err(other) => panic!("expected BindingTooLarge, got {other}"),
        Ok(_) => panic!("accepted a split above the limit"),
    }
    assert!(data::DeviceSplit::new(&small, &byte_split(5, 28)).is_ok());
}

/// The whole Fashion-MNIST training set (47 MB of bytes) fits one binding, and its first and
/// last (96-row) batches at B = 128 are the host's.
#[test]
fn the_fashion_training_set_on_the_device_gives_the_host_batches() {
    let Some((e, train)) = common::fashion_train(60_000) else {
        return;
    };
    let device = data::DeviceSplit::new(e, &train).unwrap();
    assert_eq!(device.bytes().byte_len(), 60_000 * 784);
    let batches = Batches::new(train.len(), 128, 3).unwrap().binarize(true);
    let epoch = batches.epoch(1);
    for step in [0, epoch.len() - 1] {
        let host = train.batch(e, &epoch, step).unwrap();
        let dev = device.batch(e, &epoch, step).unwrap();
        let rows = if step == 0 { 128 } else { 96 };
        assert_eq!(dev.x.shape(), &[rows, 784]);
        let (h, d) = (
            host.x.to_vec::<f32>().unwrap(),
            dev.x.to_vec::<f32>().unwrap(),
        );
        assert!(
            h.iter().zip(&d).all(|(a, b)| a.to_bits() == b.to_bits()),
            "step {step}"
        );
    }
}
