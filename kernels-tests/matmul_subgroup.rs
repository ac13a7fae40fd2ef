//! The subgroup matmul kernels (`matmul_sg`, `matmul_sg_v4`) against the CPU twin in
//! `kernels-tests/matmul.rs`, on the default engine (lavapipe has subgroups of 8).

use crate::matmul::{
    Target, fusions, more_than_65535_workgroups, random_shapes, tile_edges, w1_shapes,
};
use latent::kernels::{matmul::Kernel, matmul_subgroup};

fn target() -> Option<Target<'static>> {
    let e = crate::engine()?;
    assert!(
        matmul_subgroup::usable(e),
        "the default adapter ({}) has no subgroups of >= 8: these tests need one that does",
        e.summary()
    );
    Some(Target {
        e,
        kernel: Kernel::Subgroup,
        round: 1,
    })
}

#[test]
fn subgroup_entry_is_vec4_only_for_multiples_of_4() {
    assert_eq!(matmul_subgroup::entry(128, 784, 512), "matmul_sg_v4");
    assert_eq!(matmul_subgroup::entry(128, 785, 512), "matmul_sg");
    assert_eq!(matmul_subgroup::entry(1, 4, 4), "matmul_sg");
}

#[test]
fn subgroup_matmul_matches_cpu_on_random_shapes_and_transpositions() {
    let Some(t) = target() else { return };
    random_shapes(t, 20, 48);
}

#[test]
fn subgroup_matmul_handles_ones_and_tile_edges() {
    let Some(t) = target() else { return };
    tile_edges(t);
}

#[test]
fn subgroup_matmul_fuses_bias_relu_and_accumulation() {
    let Some(t) = target() else { return };
    fusions(t);
}

#[test]
fn subgroup_matmul_at_w1_shapes_matches_cpu() {
    let Some(t) = target() else { return };
    w1_shapes(t);
}

#[test]
fn subgroup_matmul_covers_more_than_65535_workgroups() {
    let Some(t) = target() else { return };
    more_than_65535_workgroups(t, 8);
}
