//! The parameters of 2-D transposed convolutions (PyTorch's `ConvTranspose2d`), run by
//! [`super::conv2d::Conv`] with `TapSource::Transposed` on conv2d's kernels: its forward is a
//! convolution's input gradient, its input gradient a convolution. Tests:
//! `kernels-tests/conv_transpose2d.rs`.

use super::conv2d::Conv2dParams;
use crate::engine::{Error, Result};

/// Stride, padding, dilation and output padding per axis (height, width), as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    /// Extra rows / columns at the bottom / right of the output; must be below the stride.
    pub output_padding: [usize; 2],
}

impl Default for ConvTranspose2dParams {
    /// Stride 1, no padding, no dilation, no output padding.
    fn default() -> Self {
        ConvTranspose2dParams::square(1, 0, 1, 0)
    }
}

impl ConvTranspose2dParams {
    /// The same stride, padding, dilation and output padding on both axes.
    pub fn square(stride: usize, padding: usize, dilation: usize, output_padding: usize) -> Self {
        ConvTranspose2dParams {
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [dilation; 2],
            output_padding: [output_padding; 2],
        }
    }

    /// With output_padding < stride the conv of the output has exactly x's size, so conv2d's
    /// kernels are the exact adjoint pair (PyTorch also allows < dilation; not supported here).
    fn check(&self, op: &'static str) -> Result<()> {
        let ok = (0..2).all(|a| {
            self.stride[a] >= 1 && self.dilation[a] >= 1 && self.output_padding[a] < self.stride[a]
        });
        match ok {
            true => Ok(()),
            false => Err(Error::bad(
                op,
                format!("need stride, dilation ≥ 1 and output_padding < stride: {self:?}"),
            )),
        }
    }

    /// The convolution this one transposes.
    pub fn conv(&self) -> Conv2dParams {
        Conv2dParams {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }
}

/// x [B, Cin, H, W], w [Cin, Cout, kh, kw] -> the output shape [B, Cout, H_out, W_out],
/// H_out = (H − 1)·s − 2p + d·(k − 1) + output_padding + 1.
pub(crate) fn output_shape(
    op: &'static str,
    x: &[usize],
    w: &[usize],
    p: &ConvTranspose2dParams,
) -> Result<Vec<usize>> {
    for s in [x, w] {
        if s.len() != 4 {
            return Err(Error::bad(op, format!("expected 4-D shapes, got {s:?}")));
        }
    }
    if x[1] != w[0] {
        return Err(Error::ShapeMismatch {
            op,
            lhs: x.to_vec(),
            rhs: w.to_vec(),
        });
    }
    p.check(op)?;
    let mut out = vec![x[0], w[1], 0, 0];
    for a in 0..2 {
        let (s, d, op_) = (p.stride[a], p.dilation[a], p.output_padding[a]);
        let full = (x[2 + a] - 1) * s + d * (w[2 + a] - 1) + op_ + 1;
        if full <= 2 * p.padding[a] {
            let why = format!("the output would be empty along axis {} ({p:?})", 2 + a);
            return Err(Error::bad(op, why));
        }
        out[2 + a] = full - 2 * p.padding[a];
    }
    Ok(out)
}
