//! A stack of linear layers with ReLU between them (none after the last): the small networks
//! of the colorization and forecasting models. Tested through `tests/colorize.rs`.

use super::{Linear, Module, layer_seed};
use crate::engine::{Engine, Result};
use crate::tape::Var;

/// Linear layers `widths[0] → widths[1] → …`, ReLU after every layer but the last.
pub struct Mlp {
    pub layers: Vec<Linear>,
}

impl Mlp {
    /// Layers named `<name>.<i>`, PyTorch-default init from `seed` (one derived seed per layer).
    pub fn new(engine: &Engine, name: &str, widths: &[usize], seed: u64) -> Result<Mlp> {
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let s = layer_seed(seed, i as u64 + 1);
                Linear::new(engine, &format!("{name}.{i}"), w[0], w[1], s)
            })
            .collect::<Result<_>>()?;
        Ok(Mlp { layers })
    }

    /// `x` `[B, widths[0]]` -> `[B, widths.last()]`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let last = self.layers.len() - 1;
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h, i < last)?;
        }
        Ok(h)
    }
}

impl Module for Mlp {
    fn children(&self) -> Vec<&dyn Module> {
        self.layers.iter().map(|l| l as &dyn Module).collect()
    }
}
