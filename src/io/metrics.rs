//! metrics.json: named figures in the order they were added, refused whole when one of them is
//! NaN or infinite (JSON has neither), written atomically. Tested by `tests/io.rs`.

use super::write_atomic;
use crate::{Error, Result};
use std::path::Path;

/// One value of a metrics file.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Integer(u64),
    Bool(bool),
    Text(String),
    Numbers(Vec<f64>),
    /// A figure that does not apply to this run (a loaded model has no training epoch).
    Null,
}

/// The figures of a run, in order: `Metrics::new("mlp-vae").number("test_neg_elbo", 241.4)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    entries: Vec<(String, Value)>,
}

impl Metrics {
    /// Metrics that open with `"model": model`.
    pub fn new(model: &str) -> Metrics {
        let mut m = Metrics::default();
        m.text("model", model);
        m
    }

    fn push(&mut self, name: &str, value: Value) -> &mut Metrics {
        self.entries.push((name.to_string(), value));
        self
    }

    pub fn number(&mut self, name: &str, value: f64) -> &mut Metrics {
        self.push(name, Value::Number(value))
    }

    /// `value`, or `null` when there is none.
    pub fn optional(&mut self, name: &str, value: Option<f64>) -> &mut Metrics {
        self.push(name, value.map_or(Value::Null, Value::Number))
    }

    pub fn integer(&mut self, name: &str, value: u64) -> &mut Metrics {
        self.push(name, Value::Integer(value))
    }

    pub fn flag(&mut self, name: &str, value: bool) -> &mut Metrics {
        self.push(name, Value::Bool(value))
    }

    pub fn text(&mut self, name: &str, value: impl Into<String>) -> &mut Metrics {
        self.push(name, Value::Text(value.into()))
    }

    pub fn numbers(&mut self, name: &str, values: impl IntoIterator<Item = f64>) -> &mut Metrics {
        self.push(name, Value::Numbers(values.into_iter().collect()))
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[(String, Value)] {
        &self.entries
    }

    /// The JSON object, one member per line; a non-finite number is [`Error::NonFiniteMetric`]
    /// naming it (`unit_variances[3]` inside a list), a name given twice is an error.
    pub fn to_json(&self) -> Result<String> {
        let mut out = String::from("{\n");
        for (i, (name, value)) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::bad("metrics", format!("`{name}` is given twice")));
            }
            let number = |v: f64, name: String| {
                if v.is_finite() {
                    Ok(format!("{v}"))
                } else {
                    Err(Error::NonFiniteMetric { name, value: v })
                }
            };
            let text = match value {
                Value::Number(v) => number(*v, name.clone())?,
                Value::Integer(v) => v.to_string(),
                Value::Bool(v) => v.to_string(),
                Value::Text(v) => quote(v),
                Value::Null => "null".into(),
                Value::Numbers(vs) => {
                    let items = vs
                        .iter()
                        .enumerate()
                        .map(|(j, &v)| number(v, format!("{name}[{j}]")))
                        .collect::<Result<Vec<_>>>()?;
                    format!("[{}]", items.join(", "))
                }
            };
            let comma = if i + 1 < self.entries.len() { "," } else { "" };
            out += &format!("  {}: {text}{comma}\n", quote(name));
        }
        out.push_str("}\n");
        Ok(out)
    }
}

/// Writes `metrics` to `path` atomically, or nothing when a figure is not finite
/// ([`Error::NonFiniteMetric`] names it).
pub fn write_metrics(path: impl AsRef<Path>, metrics: &Metrics) -> Result<()> {
    write_atomic(path.as_ref(), metrics.to_json()?.as_bytes())
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
