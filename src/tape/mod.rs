//! Reverse-mode autodiff over GPU tensors: each op records its inputs and launches its forward
//! kernel; `backward` walks the tape in reverse and records gradient kernels into the same
//! pending encoder (no host readback). Gradient checks: `kernels-tests/tape.rs`.

mod ops;
mod vq;

use crate::engine::{DType, Engine, Error, Result, Tensor};
use crate::kernels::elementwise as ew;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ops::Op;
pub use vq::VectorQuantized;

/// A trainable tensor and its gradient buffer, shared by the module that owns it and every
/// tape that uses it. The gradient is zeroed lazily: after [`Param::zero_grad`] the next
/// backward overwrites it instead of adding to it.
#[derive(Clone)]
pub struct Param(Rc<ParamInner>);

struct ParamInner {
    name: String,
    value: Tensor,
    grad: Tensor,
    /// Whether `grad` holds a gradient since the last `zero_grad`.
    written: Cell<bool>,
    /// A frozen parameter enters tapes as a constant (a pretrained network inside a loss).
    frozen: Cell<bool>,
}

impl Param {
    /// A parameter holding `value` (f32), with an unwritten gradient of the same shape.
    pub fn new(name: impl Into<String>, value: Tensor) -> Result<Param> {
        value.expect_dtype("Param::new", DType::F32)?;
        let grad = Tensor::uninit(value.engine(), value.shape(), DType::F32)?;
        Ok(Param(Rc::new(ParamInner {
            name: name.into(),
            value,
            grad,
            written: Cell::new(false),
            frozen: Cell::new(false),
        })))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn value(&self) -> &Tensor {
        &self.0.value
    }

    /// The gradient buffer; its contents are meaningful only when [`Param::has_grad`].
    pub fn grad(&self) -> &Tensor {
        &self.0.grad
    }

    /// Frozen (`true`): later tapes take the parameter as a constant, so no backward computes
    /// or writes its gradient; gradients still flow through the ops that use it.
    pub fn set_frozen(&self, frozen: bool) {
        self.0.frozen.set(frozen);
    }

    pub fn is_frozen(&self) -> bool {
        self.0.frozen.get()
    }

    /// Whether a backward wrote the gradient since the last [`Param::zero_grad`].
    pub fn has_grad(&self) -> bool {
        self.0.written.get()
    }

    /// Forgets the gradient (no GPU work: the next backward overwrites it).
    pub fn zero_grad(&self) {
        self.0.written.set(false);
    }

    /// Makes the gradient buffer hold zeros if no backward wrote it (for optimizers).
    pub fn materialize_grad(&self) -> Result<()> {
        if !self.has_grad() {
            self.0.value.engine().clear(&self.0.grad)?;
            self.0.written.set(true);
        }
        Ok(())
    }

    /// Whether [`Param::relocate`] can move the value and gradient (each is a whole pooled
    /// tensor that has not moved).
    pub(crate) fn movable(&self) -> bool {
        self.0.value.movable() && self.0.grad.movable()
    }

    /// Moves the value and the gradient into `value` and `grad` (views of an optimizer's
    /// arenas, see `optim`): the data is copied, and from then on every holder of the
    /// parameter, or of a clone of its value, reads and writes there.
    pub(crate) fn relocate(&self, value: &Tensor, grad: &Tensor) -> Result<()> {
        if !self.movable() {
            return Err(Error::bad("Param::relocate", "the parameter cannot move"));
        }
        self.0.value.relocate(value)?;
        self.0.grad.relocate(grad)
    }

    /// Hands the gradient slot to `write(target, accumulate)`: overwrite after `zero_grad`,
    /// add otherwise.
    fn write_grad(&self, write: impl FnOnce(&Tensor, bool) -> Result<()>) -> Result<()> {
        write(&self.0.grad, self.has_grad())?;
        self.0.written.set(true);
        Ok(())
    }
}

/// A recorded computation. Record a step on a fresh tape, call [`Tape::backward`], drop it.
#[derive(Clone)]
pub struct Tape(Rc<TapeInner>);

struct TapeInner {
    engine: Engine,
    nodes: RefCell<Vec<Node>>,
    grad_enabled: bool,
}

struct Node {
    op: Op,
    value: Tensor,
    requires_grad: bool,
}

/// A value on a tape: a tensor plus the op that made it.
#[derive(Clone)]
pub struct Var {
    id: usize,
    value: Tensor,
    tape: Tape,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var#{}({:?})", self.id, self.value)
    }
}

impl Tape {
    /// A tape that records what backward needs.
    pub fn new(engine: &Engine) -> Tape {
        Self::build(engine, true)
    }

    /// A tape for evaluation: ops run, nothing requires gradients (`no_grad`).
    pub fn no_grad(engine: &Engine) -> Tape {
        Self::build(engine, false)
    }

    fn build(engine: &Engine, grad_enabled: bool) -> Tape {
        Tape(Rc::new(TapeInner {
            engine: engine.clone(),
            nodes: RefCell::new(Vec::new()),
            grad_enabled,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    /// A constant input (data, noise): no gradient flows into it.
    pub fn input(&self, value: &Tensor) -> Var {
        self.push(Op::Input, value.clone(), false)
    }

    /// A parameter: its gradient is written into [`Param::grad`] by backward (unless it is
    /// frozen, see [`Param::set_frozen`]).
    pub fn param(&self, p: &Param) -> Var {
        self.push(Op::Param(p.clone()), p.value().clone(), !p.is_frozen())
    }

    fn push(&self, op: Op, value: Tensor, requires_grad: bool) -> Var {
        let mut nodes = self.0.nodes.borrow_mut();
        nodes.push(Node {
            op,
            value: value.clone(),
            requires_grad: requires_grad && self.0.grad_enabled,
        });
        Var {
            id: nodes.len() - 1,
            value,
            tape: self.clone(),
        }
    }

    /// Records `op`'s result; it requires a gradient if any input does.
    pub(crate) fn record(&self, op: Op, value: Tensor, inputs: &[&Var]) -> Var {
        let needs = inputs.iter().any(|v| self.requires_grad(v.id));
        self.push(op, value, needs)
    }

    fn requires_grad(&self, id: usize) -> bool {
        self.0.nodes.borrow()[id].requires_grad
    }

    /// Back-propagates from a one-element `loss`: gradients of every parameter that fed it are
    /// written (or added, see [`Param::zero_grad`]) into the parameters' gradient buffers.
    pub fn backward(&self, loss: &Var) -> Result<()> {
        if !Rc::ptr_eq(&loss.tape.0, &self.0) {
            return Err(Error::bad("backward", "the loss belongs to another tape"));
        }
        if loss.value.numel() != 1 {
            return Err(Error::bad(
                "backward",
                format!(
                    "the loss must have one element, got shape {:?}",
                    loss.value.shape()
                ),
            ));
        }
        if !self.requires_grad(loss.id) {
            return Err(Error::bad(
                "backward",
                "the loss depends on no parameter (or the tape is no_grad)",
            ));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; loss.id + 1];
        grads[loss.id] = Some(Tensor::full(self.engine(), loss.value.shape(), 1.0)?);
        let nodes = self.0.nodes.borrow();
        let mut g = Grads {
            nodes: &nodes,
            slots: &mut grads,
        };
        for id in (0..=loss.id).rev() {
            let Some(grad) = g.slots[id].take() else {
                continue;
            };
            let node = &nodes[id];
            if !node.requires_grad {
                continue;
            }
            node.op.backward(&mut g, &node.value, grad)?;
        }
        Ok(())
    }
}

/// Gradient slots of one backward pass.
pub(crate) struct Grads<'a> {
    nodes: &'a [Node],
    slots: &'a mut [Option<Tensor>],
}

impl Grads<'_> {
    fn wants(&self, id: usize) -> bool {
        self.nodes[id].requires_grad
    }

    pub(crate) fn value(&self, id: usize) -> &Tensor {
        &self.nodes[id].value
    }

    /// Removes node `id`'s gradient so far (an op that handles that node's backward itself).
    pub(crate) fn take(&mut self, id: usize) -> Option<Tensor> {
        self.slots[id].take()
    }

    /// Adds a freshly computed gradient `g` for node `id`.
    pub(crate) fn give(&mut self, id: usize, g: Tensor) -> Result<()> {
        if !self.wants(id) {
            return Ok(());
        }
        if let Op::Param(p) = &self.nodes[id].op {
            return p.write_grad(|target, acc| {
                if acc {
                    ew::accumulate(target, &g, 1.0)
                } else {
                    target.engine().copy(&g, target)
                }
            });
        }
        match &self.slots[id] {
            Some(existing) => ew::accumulate(existing, &g, 1.0),
            None => {
                self.slots[id] = Some(g);
                Ok(())
            }
        }
    }

    /// Gives node `id` the gradient that `write(target, accumulate)` computes, writing straight
    /// into a parameter's gradient or an existing slot (kernels that can accumulate, e.g. matmul).
    pub(crate) fn give_with(
        &mut self,
        id: usize,
        shape: &[usize],
        write: impl FnOnce(&Tensor, bool) -> Result<()>,
    ) -> Result<()> {
        if !self.wants(id) {
            return Ok(());
        }
        if let Op::Param(p) = &self.nodes[id].op {
            return p.write_grad(write);
        }
        match &self.slots[id] {
            Some(existing) => write(existing, true),
            None => {
                let t = Tensor::uninit(self.nodes[id].value.engine(), shape, DType::F32)?;
                write(&t, false)?;
                self.slots[id] = Some(t);
                Ok(())
            }
        }
    }
}

impl Var {
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    pub fn tape(&self) -> &Tape {
        &self.tape
    }

    /// The same value as a constant: no gradient flows back through it.
    pub fn detach(&self) -> Var {
        self.tape.input(&self.value)
    }

    /// Whether a gradient will flow back to `self` or any of `others` (an op whose inputs need
    /// none need not keep anything for backward).
    pub(crate) fn grad_needed(&self, others: &[&Var]) -> bool {
        std::iter::once(self)
            .chain(others.iter().copied())
            .any(|v| self.tape.requires_grad(v.id))
    }

    /// Errors unless `other` is on the same tape.
    pub(crate) fn same_tape(&self, op: &'static str, other: &Var) -> Result<()> {
        if Rc::ptr_eq(&self.tape.0, &other.tape.0) {
            Ok(())
        } else {
            Err(Error::bad(op, "operands are on different tapes"))
        }
    }
}
