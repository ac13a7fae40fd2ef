//! Layers built from tape ops, and the `Module` trait that exposes named parameters to the
//! optimizers and checkpoints. Tests: `kernels-tests/tape.rs`.

mod mlp;
pub mod vq;

use crate::engine::{Engine, Result, Tensor};
use crate::tape::{Param, Tape, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::Cell;

mod pixelcnn;
pub use mlp::Mlp;
pub use pixelcnn::{Condition, GatedBlock, GatedBlockConfig, MaskedConv2d};

/// One interface for every layer and model: named trainable parameters, named non-trainable
/// state (batch-norm running statistics, EMA codebooks, counters) and a train/eval mode. The
/// optimizers, the trainer and checkpoints see a model only through it.
///
/// A composite lists its sub-modules in [`Module::children`] and inherits the rest; a layer that
/// holds tensors itself overrides [`Module::params`] (and [`Module::state`] if it has state).
pub trait Module {
    /// The sub-modules, in a fixed order.
    fn children(&self) -> Vec<&dyn Module> {
        Vec::new()
    }

    /// Trainable parameters in a fixed order (optimizer state and checkpoints rely on it).
    fn params(&self) -> Vec<Param> {
        self.children().iter().flat_map(|c| c.params()).collect()
    }

    /// Named tensors that are saved and restored but not trained, in a fixed order.
    fn state(&self) -> Vec<(String, Tensor)> {
        self.children().iter().flat_map(|c| c.state()).collect()
    }

    /// Training (batch statistics, EMA updates, code usage) or evaluation mode.
    fn set_training(&self, training: bool) {
        for c in self.children() {
            c.set_training(training);
        }
    }

    /// Host-side counters that are state too (a quantiser's position in its random stream),
    /// by name; checkpoints keep them in their metadata.
    fn counters(&self) -> Vec<(String, &Cell<u64>)> {
        self.children()
            .into_iter()
            .flat_map(|c| c.counters())
            .collect()
    }

    /// Everything a checkpoint of the module holds: the parameters by name, then the state. A
    /// state tensor that is also a parameter (an EMA codebook is both) appears once.
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.value().clone()))
            .collect();
        for (name, t) in self.state() {
            if !v.iter().any(|(n, _)| *n == name) {
                v.push((name, t));
            }
        }
        v
    }
}

/// The seed of a model's `i`-th layer, derived from the model's seed (golden-ratio stride).
pub fn layer_seed(seed: u64, i: u64) -> u64 {
    seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Uniform values in [−bound, bound) from a seeded generator (PyTorch's default init family).
fn uniform_init(engine: &Engine, shape: &[usize], bound: f32, rng: &mut StdRng) -> Result<Tensor> {
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
    Tensor::from_slice(engine, &data, shape)
}

/// A weight of `shape` and a bias of `bias_len`, both U(±1/√fan_in) from `seed`: PyTorch's
/// default init of linear and convolution layers (kaiming_uniform with a = √5).
fn weight_and_bias(
    engine: &Engine,
    name: &str,
    shape: &[usize],
    bias_len: usize,
    fan_in: usize,
    seed: u64,
) -> Result<(Param, Param)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let bound = 1.0 / (fan_in as f32).sqrt();
    let w = uniform_init(engine, shape, bound, &mut rng)?;
    let b = uniform_init(engine, &[bias_len], bound, &mut rng)?;
    Ok((
        Param::new(format!("{name}.weight"), w)?,
        Param::new(format!("{name}.bias"), b)?,
    ))
}

/// y = x·Wᵀ + b with W stored [out, in] (PyTorch layout).
pub struct Linear {
    pub weight: Param,
    pub bias: Param,
}

impl Linear {
    /// PyTorch's default init: kaiming_uniform(a = √5) for W, i.e. U(±1/√in), and U(±1/√in) for b.
    pub fn new(
        engine: &Engine,
        name: &str,
        inputs: usize,
        outputs: usize,
        seed: u64,
    ) -> Result<Linear> {
        let (weight, bias) =
            weight_and_bias(engine, name, &[outputs, inputs], outputs, inputs, seed)?;
        Ok(Linear { weight, bias })
    }

    /// The layer applied to `x` [B, in], ReLU'd if `relu` (fused into the matmul).
    pub fn forward(&self, x: &Var, relu: bool) -> Result<Var> {
        let tape: &Tape = x.tape();
        x.linear(
            &tape.param(&self.weight),
            Some(&tape.param(&self.bias)),
            relu,
        )
    }
}

impl Module for Linear {
    fn params(&self) -> Vec<Param> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}

/// 2-D convolution, NCHW, weight [Cout, Cin, k, k] (PyTorch layout and init).
pub struct Conv2d {
    pub weight: Param,
    pub bias: Param,
    pub params: crate::kernels::conv2d::Conv2dParams,
}

impl Conv2d {
    /// PyTorch's default init: U(±1/√fan_in) for weight and bias, fan_in = Cin·k·k.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: &Engine,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        seed: u64,
    ) -> Result<Conv2d> {
        let (weight, bias) =
            weight_and_bias(engine, name, &[cout, cin, k, k], cout, cin * k * k, seed)?;
        let params = crate::kernels::conv2d::Conv2dParams::square(stride, padding, 1);
        Ok(Conv2d {
            weight,
            bias,
            params,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        let tape = x.tape();
        x.conv2d(
            &tape.param(&self.weight),
            Some(&tape.param(&self.bias)),
            &self.params,
        )
    }
}

impl Module for Conv2d {
    fn params(&self) -> Vec<Param> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}

/// Transposed 2-D convolution, NCHW, weight [Cin, Cout, k, k] (PyTorch layout and init).
pub struct ConvTranspose2d {
    pub weight: Param,
    pub bias: Param,
    pub params: crate::kernels::conv_transpose2d::ConvTranspose2dParams,
}

impl ConvTranspose2d {
    /// PyTorch's default init: U(±1/√fan_in) with fan_in computed from the weight's second
    /// axis, Cout·k·k (PyTorch's convention for transposed convolutions).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: &Engine,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        output_padding: usize,
        seed: u64,
    ) -> Result<ConvTranspose2d> {
        let (weight, bias) =
            weight_and_bias(engine, name, &[cin, cout, k, k], cout, cout * k * k, seed)?;
        let params = crate::kernels::conv_transpose2d::ConvTranspose2dParams::square(
            stride,
            padding,
            1,
            output_padding,
        );
        Ok(ConvTranspose2d {
            weight,
            bias,
            params,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        let tape = x.tape();
        x.conv_transpose2d(
            &tape.param(&self.weight),
            Some(&tape.param(&self.bias)),
            &self.params,
        )
    }
}

impl Module for ConvTranspose2d {
    fn params(&self) -> Vec<Param> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}

/// Batch normalisation over channels ([B, C, H, W]) or features ([B, F]), with γ, β and running
/// statistics (PyTorch defaults: eps 1e-5, momentum 0.1); batch statistics in training mode,
/// running ones in evaluation mode. The running statistics are saved with checkpoints.
pub struct BatchNorm {
    pub gamma: Param,
    pub beta: Param,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub config: crate::kernels::batchnorm::BatchNormConfig,
    name: String,
    training: std::cell::Cell<bool>,
}

impl BatchNorm {
    pub fn new(engine: &Engine, name: &str, channels: usize) -> Result<BatchNorm> {
        Ok(BatchNorm {
            gamma: Param::new(
                format!("{name}.weight"),
                Tensor::full(engine, &[channels], 1.0)?,
            )?,
            beta: Param::new(
                format!("{name}.bias"),
                Tensor::zeros(engine, &[channels], crate::DType::F32)?,
            )?,
            running_mean: Tensor::zeros(engine, &[channels], crate::DType::F32)?,
            running_var: Tensor::full(engine, &[channels], 1.0)?,
            config: crate::kernels::batchnorm::BatchNormConfig {
                eps: 1e-5,
                momentum: 0.1,
            },
            name: name.to_string(),
            training: std::cell::Cell::new(true),
        })
    }

    /// `relu(forward(x))`; in training mode one fused op (fewer passes over the activations).
    pub fn forward_relu(&self, x: &Var) -> Result<Var> {
        if !self.training.get() {
            return self.forward(x)?.relu();
        }
        let tape = x.tape();
        let (g, b) = (tape.param(&self.gamma), tape.param(&self.beta));
        let stats = (&self.running_mean, &self.running_var);
        x.batchnorm_relu_train(&g, &b, stats.0, stats.1, &self.config)
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        let tape = x.tape();
        let (g, b) = (tape.param(&self.gamma), tape.param(&self.beta));
        if self.training.get() {
            x.batchnorm_train(&g, &b, &self.running_mean, &self.running_var, &self.config)
        } else {
            x.batchnorm_eval(
                &g,
                &b,
                &self.running_mean,
                &self.running_var,
                self.config.eps,
            )
        }
    }
}

impl Module for BatchNorm {
    fn params(&self) -> Vec<Param> {
        vec![self.gamma.clone(), self.beta.clone()]
    }

    /// The running statistics, named as PyTorch names them.
    fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            (
                format!("{}.running_mean", self.name),
                self.running_mean.clone(),
            ),
            (
                format!("{}.running_var", self.name),
                self.running_var.clone(),
            ),
        ]
    }

    /// Training (batch statistics) or evaluation (running statistics).
    fn set_training(&self, training: bool) {
        self.training.set(training);
    }
}
