//! Colorization: the colourised data is deterministic, photographs (PNG and JPEG files made here)
//! become patches split by position with typed errors for bad folders, the Mahalanobis and
//! gradient terms match CPU twins (value and gradient), the diversity measures give known
//! answers, and tiny runs of all five networks (colourised shapes, photograph patches) lower
//! every loss. `cargo test --release --test colorize`.

mod common;

use latent::Error;
use latent::Tensor;
use latent::data::colour::{Colourised, SCHEMES, to_rgb};
use latent::data::photos::{PatchConfig, PhotoProblem, Photos};
use latent::models::colorize::{
    Colorization, ColorizeConfig, ColourExamples, GROUPS, Pca, Sampler, gradient_term, mahalanobis,
};
use latent::models::diverse::{best_of_k, coverage, mode_of, sample_variance};
use latent::optim::{OptimizerConfig, TrainConfig, Trainer};
use latent::tape::{Param, Tape};

fn bytes(c: &Colourised) -> Vec<u8> {
    let mut v: Vec<u8> = c.chroma.iter().flat_map(|x| x.to_le_bytes()).collect();
    v.extend(&c.schemes);
    v
}

#[test]
fn colourised_data_is_deterministic_and_uses_every_scheme() {
    let split = common::rectangles(400, 5);
    let a = Colourised::from_split(&split, 11);
    let b = Colourised::from_split(&split, 11);
    assert_eq!(bytes(&a), bytes(&b), "same seed, same bytes");
    let c = Colourised::from_split(&split, 12);
    assert_ne!(a.schemes, c.schemes, "another seed picks other schemes");
    for class in 0..4u8 {
        let n = SCHEMES[class as usize].len();
        let used: std::collections::HashSet<u8> = (0..a.len())
            .filter(|&i| a.labels[i] == class)
            .map(|i| a.schemes[i])
            .collect();
        assert_eq!(used.len(), n, "class {class} shows all {n} schemes");
    }
    // The image's own field is one of its modes, and the background stays neutral.
    let modes = a.modes_of(0);
    assert_eq!(modes[a.schemes[0] as usize], a.chroma_of(0));
    let rgb = to_rgb(a.grey_of(0), a.chroma_of(0));
    let px = a.pixels();
    for p in (0..px).filter(|&p| a.grey_of(0)[p] == 0.0) {
        assert_eq!([rgb[p], rgb[px + p], rgb[2 * px + p]], [0.0; 3]);
    }
}

/// CPU twin of the Mahalanobis loss in f64.
fn cpu_mahalanobis(err: &[f64], basis: &[f32], inv: &[f32], p: usize) -> f64 {
    let k = inv.len();
    let mut total = 0.0;
    for e in err.chunks_exact(p) {
        let mut res = e.to_vec();
        for c in 0..k {
            let v = &basis[c * p..(c + 1) * p];
            let proj: f64 = e.iter().zip(v).map(|(a, &b)| a * b as f64).sum();
            total += proj * proj * inv[c] as f64;
            for i in 0..p {
                res[i] -= proj * v[i] as f64;
            }
        }
        total += res.iter().map(|r| r * r).sum::<f64>() * inv[k - 1] as f64;
    }
    total
}

/// Value against the twin and gradient against central differences of the twin (1e-3 relative:
/// f32 sums of ~100 products).
#[test]
fn mahalanobis_loss_matches_its_cpu_twin() {
    let e = gpu!();
    let (b, p, k) = (3, 24, 5);
    let fields: Vec<f32> = (0..60 * p)
        .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * (1 + i % p) as f32 / p as f32)
        .collect();
    let pca = Pca::fit(&fields, p, k, 1).unwrap();
    // Orthonormal rows.
    for a in 0..k {
        for c in 0..k {
            let dot: f32 = (0..p)
                .map(|i| pca.basis[a * p + i] * pca.basis[c * p + i])
                .sum();
            assert!(
                (dot - (a == c) as u8 as f32).abs() < 1e-4,
                "rows {a}, {c}: {dot}"
            );
        }
    }
    assert!(pca.variances.windows(2).all(|w| w[0] >= w[1]), "descending");
    let inv: Vec<f32> = pca.floored().iter().map(|v| 1.0 / v).collect();
    let err: Vec<f32> = (0..b * p)
        .map(|i| ((i * 53 % 17) as f32 - 8.0) / 10.0)
        .collect();
    let param = Param::new("err", Tensor::from_slice(e, &err, &[b, p]).unwrap()).unwrap();
    let tape = Tape::new(e);
    let basis = Tensor::from_slice(e, &pca.basis, &[k, p]).unwrap();
    let inv_t = Tensor::from_slice(e, &inv, &[k]).unwrap();
    let loss = mahalanobis(&tape.param(&param), &basis, &inv_t).unwrap();
    let got = loss.value().to_vec::<f32>().unwrap()[0] as f64;
    let e64: Vec<f64> = err.iter().map(|&v| v as f64).collect();
    let want = cpu_mahalanobis(&e64, &pca.basis, &inv, p);
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "value {got} vs twin {want}"
    );
    tape.backward(&loss).unwrap();
    let grad = param.grad().to_vec::<f32>().unwrap();
    for i in 0..b * p {
        let h = 1e-4;
        let (mut up, mut down) = (e64.clone(), e64.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (cpu_mahalanobis(&up, &pca.basis, &inv, p)
            - cpu_mahalanobis(&down, &pca.basis, &inv, p))
            / (2.0 * h);
        assert!(
            (grad[i] as f64 - fd).abs() <= 1e-3 * (1.0 + fd.abs()),
            "[{i}] {} vs {fd}",
            grad[i]
        );
    }
}

#[test]
fn gradient_term_matches_its_cpu_twin() {
    let e = gpu!();
    let (b, c, h, w) = (2, 2, 5, 7);
    let err: Vec<f32> = (0..b * c * h * w)
        .map(|i| ((i * 29 % 13) as f32 - 6.0) / 7.0)
        .collect();
    let param = Param::new("err", Tensor::from_slice(e, &err, &[b, c, h, w]).unwrap()).unwrap();
    let tape = Tape::new(e);
    let loss = gradient_term(&tape.param(&param)).unwrap();
    let at = |i: usize, y: usize, x: usize| err[(i * h + y) * w + x] as f64;
    let mut want = 0.0;
    for i in 0..b * c {
        for y in 0..h {
            for x in 0..w {
                if x + 1 < w {
                    want += (at(i, y, x + 1) - at(i, y, x)).powi(2);
                }
                if y + 1 < h {
                    want += (at(i, y + 1, x) - at(i, y, x)).powi(2);
                }
            }
        }
    }
    let got = loss.value().to_vec::<f32>().unwrap()[0] as f64;
    assert!((got - want).abs() <= 1e-4 * want, "{got} vs {want}");
    // A constant error has no gradient term.
    let flat = Tensor::from_slice(e, &vec![0.3f32; b * c * h * w], &[b, c, h, w]).unwrap();
    let zero = gradient_term(&Tape::no_grad(e).input(&flat)).unwrap();
    assert!(zero.value().to_vec::<f32>().unwrap()[0].abs() < 1e-6);
}

#[test]
fn diversity_measures_give_known_answers() {
    // Two inputs, three samples each.
    let errors = [3.0, 1.0, 2.0, 0.5, 4.0, 0.1];
    assert_eq!(best_of_k(&errors, 3, 1), (3.0 + 0.5) / 2.0);
    assert_eq!(best_of_k(&errors, 3, 3), (1.0 + 0.1) / 2.0);
    let modes = vec![vec![1.0, 0.0], vec![-1.0, 0.0]];
    assert_eq!(mode_of(&[0.9, 0.1], &modes), Some(0));
    assert_eq!(mode_of(&[-0.8, 0.0], &modes), Some(1));
    assert_eq!(
        mode_of(&[0.0, 0.0], &modes),
        None,
        "the average shows neither mode"
    );
    assert_eq!(mode_of(&[0.1, 0.0], &modes), Some(0));
    let three = vec![vec![1.0, 0.0], vec![-1.0, 0.0], vec![0.0, 0.0]];
    assert_eq!(
        mode_of(&[0.1, 0.1], &three),
        Some(2),
        "a mode at the others' mean"
    );
    assert_eq!(mode_of(&[0.5, 0.0], &three), None);
    assert_eq!(coverage(&[Some(0), Some(0), None], 2), 0.5);
    assert_eq!(coverage(&[Some(1), Some(0)], 2), 1.0);
    assert_eq!(sample_variance(&[1.0, 3.0], 1), 1.0);
}

/// The mean of each phase's minimised loss over the first and the last of `epochs` epochs of a
/// tiny run (256 rectangles, batch 32) with learning rate `lrs[g]` for group g.
fn tiny_run(lrs: [f64; 5], epochs: usize) -> (Vec<f64>, Vec<f64>, Trainer<Colorization>) {
    let data = Colourised::from_split(&common::rectangles(256, 3), 1);
    tiny_run_on(data, lrs, epochs)
}

/// [`tiny_run`] on any 28×28 colour data.
fn tiny_run_on(
    data: Colourised,
    lrs: [f64; 5],
    epochs: usize,
) -> (Vec<f64>, Vec<f64>, Trainer<Colorization>) {
    let e = common::engine().expect("an adapter");
    let data = ColourExamples::new(data);
    let pca = Pca::fit(&data.data.chroma, 2 * 784, 8, 1).unwrap();
    let config = ColorizeConfig {
        hidden: 64,
        latent: 4,
        pcs: 8,
        ..ColorizeConfig::default()
    };
    let model = Colorization::new(e, config, &pca, 1).unwrap();
    let tc = TrainConfig {
        optimizers: lrs.iter().map(|&lr| OptimizerConfig::adam(lr)).collect(),
        ..TrainConfig::adam(32, 2e-3, 1, "rectangles")
    };
    assert_eq!(tc.optimizers.len(), GROUPS.len());
    let mut t = Trainer::new(model, tc, data.data.len()).unwrap();
    let losses = |s: &latent::optim::EpochStats| -> Vec<f64> {
        s.terms
            .iter()
            .filter(|(n, _)| *n == "loss")
            .map(|&(_, v)| v)
            .collect()
    };
    let first = losses(&t.train_epoch(&data).unwrap());
    let mut last = first.clone();
    for _ in 1..epochs {
        last = losses(&t.train_epoch(&data).unwrap());
    }
    (first, last, t)
}

/// The loss of the colour VAE, the L2-only VAE, the conditional VAE and the regression fell
/// from the first epoch's mean to the last one's (the MDN chases moving codes: checked apart).
fn assert_networks_learned(first: &[f64], last: &[f64]) {
    for phase in [0, 2, 3, 4] {
        let name = GROUPS[phase];
        assert!(
            last[phase] < first[phase],
            "{name}: {} -> {}",
            first[phase],
            last[phase]
        );
    }
}

/// Every network's loss falls over 4 epochs; the MDN, which chases the VAE's codes while they
/// move, is checked against a VAE held fixed (learning rate 0).
#[test]
fn a_tiny_colorization_run_lowers_every_loss() {
    let _ = gpu!();
    let (first, last, t) = tiny_run([2e-3; 5], 4);
    assert_networks_learned(&first, &last);
    let samples = t.model.sample(&t_grey(), 3, Sampler::Mdn, 1).unwrap();
    assert_eq!(samples.len(), 2 * 3 * 2 * 784);
    assert!(samples.iter().all(|v| v.is_finite()));
    let (first, last, _) = tiny_run([0.0, 2e-3, 0.0, 0.0, 0.0], 4);
    assert!(last[1] < first[1], "mdn: {} -> {}", first[1], last[1]);
}

/// Two grey images of the tiny run's data.
fn t_grey() -> Vec<f32> {
    Colourised::from_split(&common::rectangles(2, 3), 1).grey
}

/// Writes a `w`×`h` RGB image to `path` (PNG or JPEG by its extension) whose columns from
/// `split` on are `right`, the rest `left`.
fn write_image(
    path: &std::path::Path,
    (w, h): (u32, u32),
    split: u32,
    left: [u8; 3],
    right: [u8; 3],
) {
    let img = image::RgbImage::from_fn(w, h, |x, _| {
        image::Rgb(if x < split { left } else { right })
    });
    img.save(path).expect("write a test image");
}

/// BT.601 chroma (U, V) of an 8-bit RGB colour, as `Colourised::from_rgb` computes it.
fn chroma_of(c: [u8; 3]) -> [f32; 2] {
    let [r, g, b] = c.map(|v| v as f32 / 255.0);
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    [0.492 * (b - y), 0.877 * (r - y)]
}

const RED: [u8; 3] = [220, 30, 20];
const BLUE: [u8; 3] = [20, 40, 230];
const PATCHES: PatchConfig = PatchConfig {
    patch: 28,
    stride: 14,
    max_side: 0,
};

/// Every value of every patch's U and V planes is within `tol` of `colour`'s chroma.
fn all_patches_are(set: &Colourised, colour: [u8; 3], tol: f32) -> bool {
    let [u, v] = chroma_of(colour);
    let px = set.pixels();
    (0..set.len()).all(|i| {
        let c = set.chroma_of(i);
        c[..px].iter().all(|&x| (x - u).abs() <= tol)
            && c[px..].iter().all(|&x| (x - v).abs() <= tol)
    })
}

/// A 70×40 PNG whose right-hand 28 columns (the test strip: max(70 / 5, 28)) are blue and the
/// rest red: 2 training patches (x = 0, 14), 1 test patch (x = 42), each of one colour, so no
/// test patch overlaps a training one; a 100×60 JPEG beside it, one colour, gives 4 × 3 training
/// and 1 × 3 test patches; the sets interleave the images and a second load gives the same bytes.
#[test]
fn photographs_become_patches_split_by_position() {
    let dir = common::TempDir::new("photos");
    write_image(&dir.path("a.png"), (70, 40), 42, RED, BLUE);
    write_image(&dir.path("b.JPG"), (100, 60), 100, BLUE, BLUE);
    std::fs::write(dir.path("notes.txt"), "not an image").unwrap();
    let photos = Photos::load(&dir.0, PATCHES).unwrap();
    assert_eq!(photos.photos.len(), 2);
    assert_eq!(photos.ignored, 1, "the text file is not read");
    assert!(photos.skipped.is_empty());
    let counts: Vec<(usize, usize)> = (photos.photos.iter())
        .map(|p| (p.train_patches, p.test_patches))
        .collect();
    assert_eq!(counts, [(2, 1), (12, 3)]);
    assert_eq!((photos.train.len(), photos.test.len()), (14, 4));
    assert_eq!(photos.train.side, (28, 28));
    // Interleaved: the first patch of each image, then the second…
    assert_eq!(photos.test_sources, [0, 1, 1, 1]);
    // The PNG is lossless: its patches are its colours to f32 rounding; JPEG keeps a flat blue
    // within a few 8-bit steps.
    assert!(all_patches_are(&photos.train.take(1), RED, 1e-6));
    assert!(all_patches_are(&photos.test.take(1), BLUE, 1e-6));
    let jpeg_test = Colourised {
        grey: photos.test.grey[photos.test.pixels()..].to_vec(),
        chroma: photos.test.chroma[2 * photos.test.pixels()..].to_vec(),
        ..photos.test.clone()
    };
    assert!(all_patches_are(&jpeg_test, BLUE, 0.03));
    let grey = photos.test.grey_of(0)[0];
    assert!((grey - (0.299 * 20.0 + 0.587 * 40.0 + 0.114 * 230.0) / 255.0).abs() < 1e-6);
    assert!(photos.test.labels.is_empty() && photos.test.modes_of(0).is_empty());
    let again = Photos::load(&dir.0, PATCHES).unwrap();
    assert_eq!(
        bytes(&photos.train),
        bytes(&again.train),
        "same files, same bytes"
    );
    assert_eq!(photos.identity(), again.identity());
    // Scaled so that the shorter side is at most 56.
    let scaled = Photos::load(
        &dir.0,
        PatchConfig {
            max_side: 56,
            ..PATCHES
        },
    )
    .unwrap();
    assert_eq!(
        scaled.photos[0].size,
        (70, 40),
        "smaller images keep their size"
    );
    assert_eq!(scaled.photos[1].size, (94, 56), "100×60 -> ⌈100·56/60⌉×56");
}

/// A missing folder, a file in its place, a folder without a readable image and an image
/// smaller than a training and a test patch are typed errors naming the path; a file that does
/// not decode beside good ones is skipped and listed.
#[test]
fn bad_photograph_folders_are_typed_errors_naming_the_path() {
    let problem = |dir: &std::path::Path| match Photos::load(dir, PATCHES) {
        Err(Error::Photos { path, problem }) => (path, problem),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("`{}` was accepted", dir.display()),
    };
    let dir = common::TempDir::new("bad-photos");
    let missing = dir.path("nowhere");
    assert!(matches!(problem(&missing), (p, PhotoProblem::Missing) if p == missing));
    std::fs::write(dir.path("file.png"), b"not a png").unwrap();
    assert!(matches!(
        problem(&dir.path("file.png")),
        (_, PhotoProblem::NotAFolder)
    ));
    match problem(&dir.0) {
        (
            _,
            PhotoProblem::NoImages {
                skipped,
                ignored: 0,
            },
        ) => {
            assert_eq!(skipped.len(), 1);
            assert_eq!(skipped[0].0, dir.path("file.png"), "names the broken file");
        }
        other => panic!("{other:?}"),
    }
    write_image(&dir.path("good.png"), (60, 30), 30, RED, BLUE);
    let photos = Photos::load(&dir.0, PATCHES).unwrap();
    assert_eq!(
        photos.skipped.len(),
        1,
        "the broken file is skipped beside a good one"
    );
    write_image(&dir.path("small.png"), (55, 40), 30, RED, BLUE);
    match problem(&dir.0) {
        (
            p,
            PhotoProblem::TooSmall {
                width: 55,
                height: 40,
                patch: 28,
            },
        ) => {
            assert_eq!(p, dir.path("small.png"))
        }
        other => panic!("{other:?}"),
    }
    let message = Photos::load(&dir.0, PATCHES).err().unwrap().to_string();
    assert!(
        message.contains("small.png") && message.contains("56×28"),
        "{message}"
    );
}

/// The five networks learn from photograph patches too: every loss falls over 4 epochs.
#[test]
fn a_tiny_run_on_photograph_patches_lowers_every_loss() {
    let _ = gpu!();
    let dir = common::TempDir::new("photo-run");
    // Two images with a smooth colour ramp under a grey ramp: 2 × 8 × 7 = 112 training patches.
    for (name, tint) in [("warm.png", [1.0, 0.5, 0.2]), ("cool.png", [0.2, 0.6, 1.0])] {
        let img = image::RgbImage::from_fn(160, 120, |x, y| {
            let g = ((x + 2 * y) % 97) as f32 / 97.0;
            image::Rgb(tint.map(|t: f32| (255.0 * g * t) as u8))
        });
        img.save(dir.path(name)).unwrap();
    }
    let photos = Photos::load(&dir.0, PATCHES).unwrap();
    assert!(photos.train.len() >= 64, "{} patches", photos.train.len());
    let (first, last, t) = tiny_run_on(photos.train, [2e-3; 5], 4);
    assert_networks_learned(&first, &last);
    let grey = photos.test.take(2).grey;
    let samples = t.model.sample(&grey, 3, Sampler::Mdn, 1).unwrap();
    assert!(samples.iter().all(|v| v.is_finite()));
}
