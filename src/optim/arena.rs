//! Parameter arenas: an optimizer group's values and gradients moved into flat buffers, so that
//! one kernel launch updates the whole group. Tests: `kernels-tests/adam.rs`, `tests/trainer.rs`.
//!
//! Design. When an optimizer is built, the parameters of its group that still own their
//! buffers move ([`Param::relocate`]) into two arenas, one of values and one of gradients,
//! laid out alike: each parameter at a multiple of the device's storage-offset alignment
//! ([`Engine::view_align`]), zero padding between. The `Param` keeps its tensors; their storage
//! now points into the arena, so every module, tape, checkpoint list and earlier clone reads
//! and writes the new place, and backward writes gradients straight into the gradient arena.
//! Consecutive parameters of one arena then form a [`Run`]: a flat view over them and the
//! padding after each, updated by one launch of the per-tensor kernel. The padding stays zero
//! under Adam, AdamW and SGD (zero weight, gradient and moments give a zero update), and no
//! other tensor can hold it (views start aligned), so the run gives every parameter exactly
//! what its own launch would. Hyperparameters are per group, so nothing in the kernel varies
//! per parameter and no offset table is needed.
//!
//! Trade-off: moving happens once, at construction; a parameter that cannot move (a host
//! buffer, a view, a parameter already moved by another group and not adjacent to its
//! neighbours here) is stepped on its own, as before, so every group stays correct and a
//! usual group costs one launch. A group that shares parameters with an earlier one (the
//! AAE's encoder) steps its run of the earlier arena when the shared parameters lie there in
//! its order. Arenas are split at the storage-binding limit, one run each at most.

use crate::engine::{Engine, Result, Tensor};
use crate::tape::Param;

/// Parameters updated by one kernel launch: `value` and `grad` are flat views of one value
/// arena and one gradient arena (or a lone parameter's own tensors, flattened).
pub(crate) struct Run {
    pub value: Tensor,
    pub grad: Tensor,
}

/// Where each parameter of a group is updated.
pub(crate) struct Layout {
    pub runs: Vec<Run>,
    /// Per parameter: its run and its element offset in the run.
    pub slots: Vec<(usize, usize)>,
}

/// The runs of `params` after moving every movable one into new arenas.
pub(crate) fn layout(params: &[Param]) -> Result<Layout> {
    let Some(first) = params.first() else {
        return Ok(Layout {
            runs: Vec::new(),
            slots: Vec::new(),
        });
    };
    let engine = first.value().engine().clone();
    let align = engine.view_align();
    let limit = binding_limit(&engine, align);
    place(&engine, params, align, limit)?;

    let mut runs: Vec<Run> = Vec::new();
    let mut slots = Vec::with_capacity(params.len());
    // The open run: its first parameter, its length with padding, and the byte offsets where
    // the next parameter must start to join it.
    let mut open: Option<(Param, usize, u64, u64)> = None;
    for p in params {
        let (v, g) = (p.value(), p.grad());
        let n = v.numel().next_multiple_of(align);
        if let Some((head, len, next_v, next_g)) = &mut open
            && v.byte_offset() == *next_v
            && g.byte_offset() == *next_g
            && v.same_buffer(head.value())
            && g.same_buffer(head.grad())
            && *len + n <= limit
            && let (Some(value), Some(grad)) = (
                head.value().arena_span(*len + n),
                head.grad().arena_span(*len + n),
            )
        {
            slots.push((runs.len() - 1, *len));
            *len += n;
            *next_v += 4 * n as u64;
            *next_g += 4 * n as u64;
            let last = runs.len() - 1;
            runs[last] = Run { value, grad };
            continue;
        }
        slots.push((runs.len(), 0));
        match (v.arena_span(n), g.arena_span(n)) {
            (Some(value), Some(grad)) => {
                let next = (
                    v.byte_offset() + 4 * n as u64,
                    g.byte_offset() + 4 * n as u64,
                );
                open = Some((p.clone(), n, next.0, next.1));
                runs.push(Run { value, grad });
            }
            _ => {
                // Not in an arena: exactly its own elements, nothing after them.
                open = None;
                let flat = [v.numel()];
                runs.push(Run {
                    value: v.reshape(&flat)?,
                    grad: g.reshape(&flat)?,
                });
            }
        }
    }
    Ok(Layout { runs, slots })
}

/// Moves the movable parameters of `params` into new arenas, in order, each arena at most
/// `limit` elements (a parameter larger than that gets an arena of its own).
fn place(engine: &Engine, params: &[Param], align: usize, limit: usize) -> Result<()> {
    // Once each: a parameter listed twice, or two sharing their value, move with the first.
    let mut movable: Vec<&Param> = Vec::new();
    for p in params {
        if p.movable() && !movable.iter().any(|q| q.value().same_buffer(p.value())) {
            movable.push(p);
        }
    }
    let mut chunk: Vec<(&Param, usize)> = Vec::new();
    let mut len = 0;
    for p in movable {
        let n = p.value().numel().next_multiple_of(align);
        if len > 0 && len + n > limit {
            fill(engine, &chunk, len)?;
            chunk.clear();
            len = 0;
        }
        chunk.push((p, len));
        len += n;
    }
    if len > 0 {
        fill(engine, &chunk, len)?;
    }
    Ok(())
}

/// Makes a value and a gradient arena of `len` elements and moves each parameter to its offset.
fn fill(engine: &Engine, chunk: &[(&Param, usize)], len: usize) -> Result<()> {
    let values = Tensor::arena(engine, len)?;
    let grads = Tensor::arena(engine, len)?;
    for &(p, at) in chunk {
        let shape = p.value().shape();
        p.relocate(&values.view(at, shape)?, &grads.view(at, shape)?)?;
    }
    Ok(())
}

/// The most elements one launch may bind (the storage-binding and buffer limits), a multiple
/// of `align`.
fn binding_limit(engine: &Engine, align: usize) -> usize {
    let l = engine.limits();
    let bytes = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
    ((bytes / 4) as usize / align * align).max(align)
}
