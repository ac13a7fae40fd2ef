//! Checkpoints (round trip, crash mid-save, corruption, mismatches) and PNG outputs (decoded
//! sizes and pixels at known spots). Run with `cargo test --release --test io`.

mod common;

use common::TempDir;
use latent::io::{self, Meta};
use latent::kernels::elementwise::{self as ew, Unary};
use latent::nn::Module;
use latent::{CheckpointProblem, DType, Engine, Error, Tensor};

/// A stand-in for a model: two f32 parameters and a u32 counter.
struct Model {
    w: Tensor,
    b: Tensor,
    counts: Tensor,
}

impl Model {
    fn new(e: &Engine, scale: f32) -> Model {
        let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * scale).collect();
        Model {
            w: Tensor::from_slice(e, &w, &[3, 4]).unwrap(),
            b: Tensor::from_slice(e, &[scale, -scale], &[2]).unwrap(),
            counts: Tensor::from_slice(e, &[1u32, 70_000, u32::MAX], &[3]).unwrap(),
        }
    }

    fn zeros(e: &Engine) -> Model {
        Model {
            w: Tensor::zeros(e, &[3, 4], DType::F32).unwrap(),
            b: Tensor::zeros(e, &[2], DType::F32).unwrap(),
            counts: Tensor::zeros(e, &[3], DType::U32).unwrap(),
        }
    }

    fn values(&self) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        (
            self.w.to_vec().unwrap(),
            self.b.to_vec().unwrap(),
            self.counts.to_vec().unwrap(),
        )
    }
}

impl Module for Model {
    fn params(&self) -> Vec<latent::tape::Param> {
        Vec::new()
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("enc.w".into(), self.w.clone()),
            ("enc.b".into(), self.b.clone()),
            ("adam.counts".into(), self.counts.clone()),
        ]
    }
}

fn meta(step: u64) -> Meta {
    Meta::from([
        ("step".into(), step.to_string()),
        ("epoch".into(), "3".into()),
        ("seed".into(), "42".into()),
        ("model".into(), "mlp 784-512-256-64".into()),
    ])
}

fn checkpoint_problem<T: std::fmt::Debug>(r: latent::Result<T>) -> CheckpointProblem {
    match r {
        Err(Error::Checkpoint { problem, .. }) => problem,
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_round_trips_tensors_and_metadata() {
    let e = gpu!();
    let dir = TempDir::new("ckpt-round");
    let path = dir.path("model.safetensors");
    let model = Model::new(e, 0.25);
    io::save_module(&path, &model, &meta(1234)).unwrap();
    assert!(
        !dir.path("model.safetensors.tmp").exists(),
        "no temp file left"
    );

    let ckpt = io::load(&path).unwrap();
    assert_eq!(ckpt.names(), ["adam.counts", "enc.b", "enc.w"]);
    assert_eq!(ckpt.shape("enc.w"), Some(&[3usize, 4][..]));
    let (w, b, counts) = model.values();
    assert_eq!(ckpt.tensor("enc.w", &[3, 4]).unwrap(), w);
    assert_eq!(ckpt.tensor("enc.b", &[2]).unwrap(), b);
    assert_eq!(ckpt.tensor_u32("adam.counts", &[3]).unwrap(), counts);
    assert_eq!(ckpt.metadata(), &meta(1234), "metadata comes back as saved");
    assert_eq!(ckpt.meta("model").unwrap(), "mlp 784-512-256-64");
    assert_eq!(ckpt.meta_parse::<u64>("step").unwrap(), 1234);

    let restored = Model::zeros(e);
    io::restore_module(&ckpt, &restored).unwrap();
    assert_eq!(restored.values(), model.values());
}

#[test]
fn restoring_in_place_is_ordered_with_pending_kernels() {
    let e = gpu!();
    let dir = TempDir::new("ckpt-order");
    let path = dir.path("m.safetensors");
    let model = Model::new(e, 1.0);
    io::save(&path, &[("w", &model.w)], &Meta::new()).unwrap();
    let ckpt = io::load(&path).unwrap();

    // fill (recorded) -> restore -> neg (recorded): neg must see the restored values, and
    // the restore must land after the fill, all without a flush in between.
    let target = Tensor::zeros(e, &[3, 4], DType::F32).unwrap();
    ew::fill(&target, 9.0).unwrap();
    ckpt.restore(&[("w", &target)]).unwrap();
    let negated = ew::unary(Unary::Neg, &target).unwrap();
    let w: Vec<f32> = model.w.to_vec().unwrap();
    assert_eq!(target.to_vec::<f32>().unwrap(), w);
    let neg: Vec<f32> = w.iter().map(|v| -v).collect();
    assert_eq!(negated.to_vec::<f32>().unwrap(), neg);
}

#[test]
fn a_crash_mid_save_never_replaces_a_good_checkpoint() {
    let e = gpu!();
    let dir = TempDir::new("ckpt-crash");
    let path = dir.path("model.safetensors");
    let tmp = dir.path("model.safetensors.tmp");
    let good = Model::new(e, 0.5);
    io::save_module(&path, &good, &meta(100)).unwrap();

    // A crash after writing part of the next checkpoint leaves a garbage .tmp beside it.
    std::fs::write(&tmp, b"half a checkpoint \x00\x01\x02").unwrap();
    let ckpt = io::load(&path).unwrap();
    assert_eq!(ckpt.meta_parse::<u64>("step").unwrap(), 100);
    assert_eq!(ckpt.tensor("enc.w", &[3, 4]).unwrap(), good.values().0);

    // The next save goes through despite the stale .tmp, and replaces the file whole.
    let better = Model::new(e, 2.0);
    io::save_module(&path, &better, &meta(200)).unwrap();
    assert!(!tmp.exists());
    let ckpt = io::load(&path).unwrap();
    assert_eq!(ckpt.meta_parse::<u64>("step").unwrap(), 200);
    assert_eq!(ckpt.tensor("enc.w", &[3, 4]).unwrap(), better.values().0);

    // A save that fails before the rename (here the .tmp cannot be created) is a typed I/O
    // error naming the temporary file and leaves the old checkpoint as it was.
    std::fs::create_dir(&tmp).unwrap();
    match io::save_module(&path, &good, &meta(300)) {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, tmp),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert_eq!(
        io::load(&path).unwrap().meta_parse::<u64>("step").unwrap(),
        200
    );
}

#[test]
fn truncated_or_corrupt_checkpoints_are_typed_errors() {
    let e = gpu!();
    let dir = TempDir::new("ckpt-corrupt");
    let path = dir.path("model.safetensors");
    io::save_module(&path, &Model::new(e, 1.0), &meta(7)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let bad = dir.path("bad.safetensors");

    // Every truncation, from empty to one byte short.
    for len in 0..bytes.len() {
        std::fs::write(&bad, &bytes[..len]).unwrap();
        let problem = checkpoint_problem(io::load(&bad));
        assert!(
            matches!(problem, CheckpointProblem::Corrupt(_)),
            "{len}: {problem:?}"
        );
    }
    // One flipped bit anywhere: in the header it breaks the layout or the JSON, in the data
    // or a metadata value the checksum catches it.
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for at in [0, 3, 9, header / 2, header + 1, bytes.len() - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x04;
        std::fs::write(&bad, &flipped).unwrap();
        let problem = checkpoint_problem(io::load(&bad));
        assert!(
            matches!(problem, CheckpointProblem::Corrupt(_)),
            "{at}: {problem:?}"
        );
    }
    let step_at = header_find(&bytes, b"\"step\":\"7\"") + 8;
    let mut edited = bytes.clone();
    edited[step_at] = b'8';
    std::fs::write(&bad, &edited).unwrap();
    let problem = checkpoint_problem(io::load(&bad));
    assert!(
        matches!(&problem, CheckpointProblem::Corrupt(m) if m.contains("checksum")),
        "{problem:?}"
    );
    // A missing file is an I/O error naming it.
    match io::load(dir.path("none.safetensors")) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("none.safetensors")),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

/// Offset of `needle` in `haystack`.
fn header_find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in header")
}

#[test]
fn a_wrong_name_shape_or_dtype_is_a_typed_error_naming_the_tensor() {
    let e = gpu!();
    let dir = TempDir::new("ckpt-mismatch");
    let path = dir.path("model.safetensors");
    let model = Model::new(e, 1.0);
    io::save_module(&path, &model, &meta(1)).unwrap();
    let ckpt = io::load(&path).unwrap();

    let p = checkpoint_problem(ckpt.tensor("dec.w", &[3, 4]));
    assert!(
        matches!(&p, CheckpointProblem::MissingTensor { name, available }
            if name == "dec.w" && available.len() == 3),
        "{p:?}"
    );
    let p = checkpoint_problem(ckpt.tensor("enc.w", &[4, 3]));
    assert!(
        matches!(&p, CheckpointProblem::WrongShape { name, expected, found }
            if name == "enc.w" && expected == &[4, 3] && found == &[3, 4]),
        "{p:?}"
    );
    let p = checkpoint_problem(ckpt.tensor_u32("enc.b", &[2]));
    assert!(
        matches!(&p, CheckpointProblem::WrongDType { name, expected: "u32", found }
            if name == "enc.b" && found == "f32"),
        "{p:?}"
    );
    let p = checkpoint_problem(ckpt.meta("lr"));
    assert!(matches!(p, CheckpointProblem::MissingMeta { .. }), "{p:?}");
    let p = checkpoint_problem(ckpt.meta_parse::<u64>("model"));
    assert!(matches!(p, CheckpointProblem::BadMeta { .. }), "{p:?}");
    let msg = Error::Checkpoint {
        path: path.clone(),
        problem: p,
    }
    .to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("`model`"),
        "{msg}"
    );

    // A restore with one bad target changes none of the targets.
    let target = Model::zeros(e);
    let wrong = Tensor::zeros(e, &[5], DType::F32).unwrap();
    let p = checkpoint_problem(ckpt.restore(&[("enc.w", &target.w), ("enc.b", &wrong)]));
    assert!(matches!(p, CheckpointProblem::WrongShape { .. }), "{p:?}");
    assert!(target.w.to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));

    // Saving two tensors under one name is refused.
    let p = checkpoint_problem(io::save(
        dir.path("dup.safetensors"),
        &[("x", &model.w), ("x", &model.b)],
        &Meta::new(),
    ));
    assert!(
        matches!(p, CheckpointProblem::DuplicateName { .. }),
        "{p:?}"
    );
}

#[test]
fn a_grey_grid_has_the_expected_size_tiles_and_padding() {
    let dir = TempDir::new("grid");
    let path = dir.path("grid.png");
    // Three 2×3 images in 2 rows -> 2 columns; padding 1: 9×7 pixels, one empty slot.
    let mut images = vec![0.0f32; 3 * 6];
    images[0] = 1.0; // image 0, (0, 0)
    images[6 + 5] = 0.5; // image 1, (1, 2)
    images[12 + 3] = -1.0; // image 2, (1, 0), clamped
    images[12 + 4] = 2.0; // image 2, (1, 1), clamped
    io::save_grid(&path, &images, 2, 2, 3, 1).unwrap();
    let img = image::open(&path).unwrap().to_luma8();
    assert_eq!(img.dimensions(), (9, 7));
    let at = |x, y| img.get_pixel(x, y).0[0];
    assert_eq!(at(0, 0), 255, "padding is white");
    assert_eq!(at(1, 1), 255, "image 0 (0, 0)");
    assert_eq!(at(2, 1), 0, "image 0 (0, 1)");
    assert_eq!(at(4, 1), 255, "padding between columns");
    assert_eq!(at(5 + 2, 1 + 1), 128, "image 1 (1, 2): 0.5 rounds to 128");
    assert_eq!(at(1, 4 + 1), 0, "image 2 (1, 0)");
    assert_eq!(at(2, 4 + 1), 255, "image 2 (1, 1)");
    assert_eq!(at(6, 5), 255, "the empty slot is padding");
    assert!(matches!(
        io::save_grid(&path, &images[..17], 2, 2, 3, 1),
        Err(Error::BadInput { .. })
    ));
    assert!(matches!(
        io::save_grid(&path, &images, 4, 2, 3, 1),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn an_rgb_grid_keeps_the_channels_apart() {
    let dir = TempDir::new("rgb");
    let path = dir.path("rgb.png");
    // One 2×2 image, planar RGB: pixel (0, 1) is pure red, (1, 0) pure blue.
    let mut image = vec![0.0f32; 12];
    image[1] = 1.0; // R plane, (0, 1)
    image[8 + 2] = 1.0; // B plane, (1, 0)
    io::save_rgb_grid(&path, &image, 1, 2, 2, 2).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (6, 6));
    assert_eq!(img.get_pixel(3, 2).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(2, 3).0, [0, 0, 255]);
    assert_eq!(img.get_pixel(2, 2).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
}

#[test]
fn checkpoint_metadata_is_written_in_sorted_key_order() {
    let e = gpu!();
    let dir = TempDir::new("ckpt-order-meta");
    let path = dir.path("m.safetensors");
    // Twenty keys: in a HashMap's randomly seeded order they would almost never come sorted,
    // so two processes saving the same state would write different bytes.
    let meta: Meta = (0..20)
        .map(|i| (format!("key{i:02}"), format!("value \"{i}\"")))
        .collect();
    io::save_module(&path, &Model::new(e, 1.0), &meta).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let at: Vec<usize> = meta
        .keys()
        .map(|k| header.find(&format!("\"{k}\"")).expect("key in header"))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{header}");
    assert_eq!(
        io::load(&path).unwrap().meta("key07").unwrap(),
        "value \"7\""
    );
}
