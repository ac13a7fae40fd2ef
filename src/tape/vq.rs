//! Vector quantisation on the tape (van den Oord et al. 2017, eq. 3): the straight-through z_q
//! and the codebook and commitment losses, forward here and backward in `VqLoss::backward`.
//! Gradient checks: `kernels-tests/vq.rs`.

use super::ops::Op;
use super::{Grads, Var};
use crate::engine::{Error, Result, Tensor};
use crate::kernels::elementwise as ew;
use crate::kernels::reduce;
use crate::kernels::vq;

/// Which side of ‖z_e − e‖² a loss trains (the other is a stopped gradient, `sg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VqSide {
    /// ‖sg[z_e] − e‖²: moves the codes towards the encoder outputs.
    Codebook,
    /// β‖z_e − sg[e]‖²: keeps the encoder outputs near their codes.
    Commitment,
}

/// A VQ loss node: `weight · mean_{n,d} (z_e − z_q)²` with the gradient to one side only.
pub(crate) struct VqLoss {
    pub(super) z_e: usize,
    pub(super) codebook: usize,
    pub(super) indices: Tensor,
    pub(super) z_q: Tensor,
    pub(super) side: VqSide,
    pub(super) weight: f32,
}

/// What [`Var::vector_quantize`] returns.
pub struct VectorQuantized {
    /// The nearest codes' values [N, D]; their gradient goes straight through to z_e.
    pub z_q: Var,
    /// The nearest code of each row, u32 `[N]`.
    pub indices: Tensor,
    /// mean ‖`sg[z_e]` − e‖² over the N·D elements, `[1]` (gradient to the codebook only).
    pub codebook_loss: Var,
    /// β · mean ‖z_e − `sg[e]`‖², `[1]` (gradient to z_e only).
    pub commitment_loss: Var,
}

impl VectorQuantized {
    /// The VQ objective's extra terms: codebook loss + commitment loss.
    pub fn loss(&self) -> Result<Var> {
        self.codebook_loss.add(&self.commitment_loss)
    }
}

impl Var {
    /// Quantises `self` = z_e [N, D] with `codebook` [K, D] (nearest code in squared L2, ties to
    /// the lowest index): z_q with the straight-through gradient (dz_e = dz_q; the codebook gets
    /// nothing through z_q), and the two losses, each a mean over the N·D elements as in the
    /// reference implementations. Pass the codebook as an input (not a parameter) to train it by
    /// EMA instead: its loss then has no gradient to give.
    pub fn vector_quantize(&self, codebook: &Var, beta: f32) -> Result<VectorQuantized> {
        self.same_tape("vector_quantize", codebook)?;
        if beta.is_nan() || beta < 0.0 {
            return Err(Error::bad(
                "vector_quantize",
                format!("β must be ≥ 0, got {beta}"),
            ));
        }
        let q = vq::quantize(&self.value, &codebook.value)?;
        let tape = &self.tape;
        let z_q = tape.record(Op::StraightThrough { x: self.id }, q.z_q.clone(), &[self]);
        let mean = 1.0 / self.value.numel() as f32;
        let mse = ew::affine(&reduce::sum_all(&q.sq_err)?, mean, 0.0)?;
        let loss = |side, weight: f32, value: Tensor, input: &Var| {
            let op = Op::VqLoss(VqLoss {
                z_e: self.id,
                codebook: codebook.id,
                indices: q.indices.clone(),
                z_q: q.z_q.clone(),
                side,
                weight,
            });
            tape.record(op, value, &[input])
        };
        let commitment = ew::affine(&mse, beta, 0.0)?;
        Ok(VectorQuantized {
            codebook_loss: loss(VqSide::Codebook, 1.0, mse, codebook),
            commitment_loss: loss(VqSide::Commitment, beta, commitment, self),
            z_q,
            indices: q.indices,
        })
    }
}

impl VqLoss {
    /// d/de_k = g·2w/(N·D)·Σ_{n of k} (e_k − z_n) (from the batch's cluster sums), or
    /// d/dz_n = g·2w/(N·D)·(z_n − z_q,n); `g` is the loss's gradient, [1] on the GPU.
    pub(super) fn backward(&self, gr: &mut Grads, g: &Tensor) -> Result<()> {
        let z = gr.value(self.z_e).clone();
        let scale = 2.0 * self.weight / z.numel() as f32;
        match self.side {
            VqSide::Codebook => {
                let e = gr.value(self.codebook).clone();
                let clusters = vq::cluster_sums(&z, &self.indices, e.shape()[0])?;
                gr.give_with(self.codebook, e.shape(), |t, acc| {
                    vq::codebook_grad_into(&e, &clusters, g, scale, t, acc)
                })
            }
            VqSide::Commitment => gr.give_with(self.z_e, z.shape(), |t, acc| {
                vq::commitment_grad_into(&z, &self.z_q, g, scale, t, acc)
            }),
        }
    }
}
