//! The subgroup matmul kernels (`matmul_sg`, `matmul_sg_v4`) against the CPU twin in
//! `kernels-tests/matmul.rs`, on the default engine (lavapipe has subgroups of 8).

use crate::gpu;
use crate::matmul::{fusions, more_than_65535_workgroups, random_shapes, tile_edges, w1_shapes};
use latent::kernels::matmul_subgroup;

fn engine() -> Option<&'static latent::Engine> {
    let e = crate::engine()?;
    assert!(
        matmul_subgroup::usable(e),
        "the default adapter ({}) has no subgroups of >= 8: these tests need one that does",
        e.summary()
    );
    Some(e)
}

#[test]
fn subgroup_entry_is_vec4_only_for_multiples_of_4() {
    assert_eq!(matmul_subgroup::entry(128, 784, 512), "matmul_sg_v4");
    assert_eq!(matmul_subgroup::entry(128, 785, 512), "matmul_sg");
    assert_eq!(matmul_subgroup::entry(1, 4, 4), "matmul_sg");
}

#[test]
fn subgroup_matmul_matches_cpu_on_random_shapes_and_transpositions() {
    let _ = gpu!();
    let Some(e) = engine() else { return };
    random_shapes(e, 20, 48);
}

#[test]
fn subgroup_matmul_handles_ones_and_tile_edges() {
    let _ = gpu!();
    let Some(e) = engine() else { return };
    tile_edges(e);
}

#[test]
fn subgroup_matmul_fuses_bias_relu_and_accumulation() {
    let _ = gpu!();
    let Some(e) = engine() else { return };
    fusions(e);
}

#[test]
fn subgroup_matmul_at_w1_shapes_matches_cpu() {
    let _ = gpu!();
    let Some(e) = engine() else { return };
    w1_shapes(e);
}

#[test]
fn subgroup_matmul_covers_more_than_65535_workgroups() {
    let _ = gpu!();
    let Some(e) = engine() else { return };
    more_than_65535_workgroups(e);
}
