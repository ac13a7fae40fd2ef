//! CPU twin of `shaders/gather.wgsl` (8-bit images gathered by an index list, converted by a
//! level table and optionally binarised) and bit-exact GPU comparisons on awkward sizes: rows
//! that straddle words, odd batches, parts of a batch that start inside a Philox block.

use crate::random::cpu_uniform;
use crate::{error_kind, gpu, rng};
use latent::kernels::gather::{Binarize, gather, pack, unit_levels};
use latent::{DType, Engine, Tensor};
use rand::Rng;
use rand::seq::SliceRandom;

// ---- CPU twin -------------------------------------------------------------------------------

/// `[rows, pixels]`: image `order[start + r]`'s pixel `c` as `v as f32 / 255.0`, then 1 if
/// `u < x` else 0 with `u` value `first + i` of the uniform draw `(seed, offset)`.
pub fn cpu_gather(
    bytes: &[u8],
    pixels: usize,
    order: &[u32],
    (start, rows): (usize, usize),
    binarize: Option<Binarize>,
) -> Vec<f32> {
    let n = rows * pixels;
    let x = (0..n).map(|i| {
        let image = order[start + i / pixels] as usize;
        bytes[image * pixels + i % pixels] as f32 / 255.0
    });
    match binarize {
        None => x.collect(),
        Some(b) => {
            let u = cpu_uniform(b.first + n, b.seed, b.offset);
            x.zip(&u[b.first..])
                .map(|(x, &u)| if u < x { 1.0 } else { 0.0 })
                .collect()
        }
    }
}

// ---- helpers --------------------------------------------------------------------------------

/// `count` images of `pixels` random bytes on the device, with the level table.
fn upload(e: &Engine, bytes: &[u8]) -> (Tensor, Tensor) {
    let words = pack(bytes);
    let images = Tensor::from_slice(e, &words, &[words.len()]).unwrap();
    let levels = Tensor::from_slice(e, &unit_levels(), &[256]).unwrap();
    (images, levels)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn pack_lays_bytes_out_little_endian_with_a_zero_padded_last_word() {
    assert_eq!(pack(&[1, 2, 3, 4, 5]), vec![0x0403_0201, 0x05]);
    assert_eq!(pack(&[0xff; 4]), vec![u32::MAX]);
    assert!(pack(&[]).is_empty());
}

/// The table holds the host's division: a multiply by 1/255 differs in the last bit for some
/// bytes, which would change a run's results.
#[test]
fn unit_levels_are_the_host_division_not_a_reciprocal_multiply() {
    let levels = unit_levels();
    for v in 0..=255u8 {
        assert_eq!(levels[v as usize].to_bits(), (v as f32 / 255.0).to_bits());
    }
    let reciprocal = (0..=255u8).filter(|&v| v as f32 * (1.0 / 255.0) != v as f32 / 255.0);
    assert!(reciprocal.count() > 0, "the table would not be needed");
}

/// Random data sets, orders (with repeats) and batch windows, both entries (pixels a multiple
/// of 4 or not), with and without binarisation, parts starting at any element of a Philox
/// block and counters carrying into the high word. Exact: a table lookup, a copy and the
/// uniform's exact 24-bit compare leave no rounding.
#[test]
fn gather_matches_twin_bit_for_bit_on_awkward_shapes() {
    let e = gpu!();
    let mut r = rng(5);
    for case in 0..40 {
        let pixels = [1, 3, 4, 5, 7, 13, 16, 784][case % 8];
        let count = r.random_range(1..40);
        let bytes: Vec<u8> = (0..count * pixels).map(|_| r.random()).collect();
        let m = r.random_range(1..3 * count);
        let order: Vec<u32> = (0..m).map(|_| r.random_range(0..count as u32)).collect();
        let start = r.random_range(0..m);
        let rows = r.random_range(1..=m - start);
        let binarize = (case % 3 != 0).then(|| Binarize {
            seed: r.random(),
            // Near 2^32 blocks the counter carries into its high word.
            offset: match case % 2 {
                0 => r.random_range(0..1 << 40),
                _ => u32::MAX as u64 - r.random_range(0..8),
            },
            first: r.random_range(0..4 * rows * pixels),
        });
        let (images, levels) = upload(e, &bytes);
        let order_t = Tensor::from_slice(e, &order, &[m]).unwrap();
        let gpu = gather(&images, &levels, &order_t, (start, rows), pixels, binarize).unwrap();
        assert_eq!(gpu.shape(), &[rows, pixels]);
        let want = cpu_gather(&bytes, pixels, &order, (start, rows), binarize);
        let got = gpu.to_vec::<f32>().unwrap();
        if bits(&got) != bits(&want) {
            let bad = (0..want.len()).find(|&i| got[i].to_bits() != want[i].to_bits());
            let i = bad.unwrap();
            panic!(
                "case {case}: pixels {pixels}, rows {start}+{rows} of {m}, {binarize:?}: \
                 [{i}] gpu {} cpu {}",
                got[i], want[i]
            );
        }
    }
}

/// Every batch of an epoch of 37 images of 28×28 in batches of 8 (the last one 5 rows) is the
/// host's gather of the same indices, bit for bit.
#[test]
fn gather_reads_every_batch_of_a_permuted_epoch_with_a_short_last_one() {
    let e = gpu!();
    let mut r = rng(9);
    let (count, pixels, batch) = (37, 784, 8);
    let bytes: Vec<u8> = (0..count * pixels).map(|_| r.random()).collect();
    let mut order: Vec<u32> = (0..count as u32).collect();
    order.shuffle(&mut r);
    let (images, levels) = upload(e, &bytes);
    let order_t = Tensor::from_slice(e, &order, &[count]).unwrap();
    for start in (0..count).step_by(batch) {
        let rows = batch.min(count - start);
        let gpu = gather(&images, &levels, &order_t, (start, rows), pixels, None).unwrap();
        let host: Vec<f32> = order[start..start + rows]
            .iter()
            .flat_map(|&k| &bytes[k as usize * pixels..(k as usize + 1) * pixels])
            .map(|&v| v as f32 / 255.0)
            .collect();
        assert_eq!(
            bits(&gpu.to_vec::<f32>().unwrap()),
            bits(&host),
            "rows {start}+{rows}"
        );
    }
}

/// The binarised gather draws exactly what `random::bernoulli` draws on the host-gathered
/// batch, and a part of the batch what its rows draw in the whole one.
#[test]
fn binarised_gather_is_bernoulli_of_the_gathered_batch() {
    let e = gpu!();
    let mut r = rng(13);
    let (count, pixels, rows) = (11, 15, 7);
    let bytes: Vec<u8> = (0..count * pixels).map(|_| r.random()).collect();
    let order: Vec<u32> = (0..rows as u32).map(|i| (i * 3) % count as u32).collect();
    let (images, levels) = upload(e, &bytes);
    let order_t = Tensor::from_slice(e, &order, &[rows]).unwrap();
    let (seed, offset) = (0xB1A7_0000_0000_0007, 12_345);
    let host = cpu_gather(&bytes, pixels, &order, (0, rows), None);
    let x = Tensor::from_slice(e, &host, &[rows, pixels]).unwrap();
    let whole = latent::kernels::random::bernoulli(&x, seed, offset).unwrap();
    let whole = bits(&whole.to_vec::<f32>().unwrap());
    // Rows 2..5 of the batch: their first element, 30, lies inside a Philox block.
    for (start, n) in [(0, rows), (2, 3)] {
        let draw = Binarize {
            seed,
            offset,
            first: start * pixels,
        };
        let part = gather(&images, &levels, &order_t, (start, n), pixels, Some(draw)).unwrap();
        let want = &whole[start * pixels..(start + n) * pixels];
        assert_eq!(
            bits(&part.to_vec::<f32>().unwrap()),
            want,
            "rows {start}+{n}"
        );
    }
}

#[test]
fn gather_refuses_bad_windows_and_tensors_naming_the_op() {
    let e = gpu!();
    let (images, levels) = upload(e, &[7; 40]);
    let order = Tensor::from_slice(e, &[0u32, 1, 2, 3], &[4]).unwrap();
    let floats = Tensor::zeros(e, &[4], DType::F32).unwrap();
    let short = Tensor::zeros(e, &[255], DType::F32).unwrap();
    let err = |r: latent::Result<Tensor>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    let past = err(gather(&images, &levels, &order, (2, 3), 10, None));
    assert!(past.starts_with("gather::gather"), "{past}");
    let none = err(gather(&images, &levels, &order, (0, 0), 10, None));
    assert!(none.contains("at least one row"), "{none}");
    let kind = error_kind(gather(&images, &levels, &floats, (0, 1), 10, None));
    assert_eq!(kind, "DTypeMismatch");
    let kind = error_kind(gather(&images, &short, &order, (0, 1), 10, None));
    assert_eq!(kind, "ShapeMismatch");
}
