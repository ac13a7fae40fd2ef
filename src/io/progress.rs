//! Progress of long loops (training epochs, prior training, sampling, evaluation): a live
//! indicatif bar with items/s, the running loss and the time left when stdout is a terminal;
//! nothing when it is not (CI and logs keep the callers' one line per epoch).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a bar may ask for the running loss: reading it back waits for the GPU, so a
/// training loop reads its step log at most this often, never once per step.
pub const LOSS_EVERY: Duration = Duration::from_secs(2);

/// One bar over `total` items (images, code maps, positions).
pub struct Progress {
    bar: ProgressBar,
    last_loss: Instant,
}

impl Progress {
    /// A bar labelled `what` over `total` items called `unit`; hidden when stdout is not a
    /// terminal or `LATENT_NO_PROGRESS` is set.
    pub fn new(what: &str, total: u64, unit: &str) -> Progress {
        let live = std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal()
            && std::env::var_os("LATENT_NO_PROGRESS").is_none();
        let bar = if live {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        let template = format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} {{msg}} ETA {{eta}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_string());
        Progress {
            bar,
            last_loss: Instant::now(),
        }
    }

    /// Whether the bar is drawn (callers skip work that only feeds it).
    pub fn is_live(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Moves the bar to `done` items.
    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Whether [`LOSS_EVERY`] has passed since the last loss shown (and the bar is drawn).
    pub fn wants_loss(&self) -> bool {
        self.is_live() && self.last_loss.elapsed() >= LOSS_EVERY
    }

    /// Shows the running loss (mean over the steps so far).
    pub fn show_loss(&mut self, name: &str, value: f64) {
        self.bar.set_message(format!("{name} {value:.4}"));
        self.last_loss = Instant::now();
    }

    /// Removes the bar (the caller prints its summary line).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
