//! Files out: safetensors checkpoints, PNG image grids, SVG plots, CSV series and
//! metrics.json, all written atomically; and the progress bars of long loops.
//! Tested by `tests/io.rs` (`cargo test --release --test io`).

mod checkpoint;
mod font;
mod grid;
mod metrics;
mod plot;
mod progress;

pub use checkpoint::{
    CHECKSUM_KEY, Checkpoint, Meta, OPTIMIZER_PREFIX, load, load_module, module_contents,
    restore_counters, restore_module, save, save_module,
};
pub use font::{GLYPH, draw_text, text_width};
pub use grid::{
    GridLabels, save_grid, save_labelled_grid, save_labelled_planes, save_reconstructions,
    save_rgb_grid,
};
pub use metrics::{Metrics, Value, write_metrics};
pub use plot::{
    Labels, PALETTE, bar_chart_svg, line_chart_svg, line_panels_svg, scatter_over_svg, scatter_svg,
    series_csv,
};
pub use progress::{LOSS_EVERY, Progress};

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that readers (and a crash) see the old file or the new one,
/// never a part: write `<path>.tmp` in the same folder, flush and fsync it, rename it over
/// `path`, then fsync the folder so the rename itself survives a power cut.
///
/// With the feature `mpi`, only rank 0 of a data-parallel run writes; the other ranks hold the
/// same model and would write the same files.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    #[cfg(feature = "mpi")]
    if !crate::ranks::is_root() {
        return Ok(());
    }
    let tmp = tmp_path(path)?;
    let io = |action: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let written = (|| {
        // create() truncates a stale .tmp left by an earlier crash.
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("rename the temporary file onto", path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Best effort: some file systems refuse to fsync a directory; the data is on disk.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// `<path>.tmp`, beside `path` so the rename stays within one file system.
fn tmp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        Error::bad(
            "write_atomic",
            format!("`{}` does not name a file", path.display()),
        )
    })?;
    let mut tmp = name.to_os_string();
    tmp.push(".tmp");
    Ok(path.with_file_name(tmp))
}

/// Encodes 8-bit pixels as PNG and writes them atomically.
fn write_png(
    path: &Path,
    pixels: &[u8],
    width: u32,
    height: u32,
    colour: image::ExtendedColorType,
) -> Result<()> {
    use image::ImageEncoder;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(pixels, width, height, colour)
        .map_err(|e| Error::bad("write_png", format!("`{}`: {e}", path.display())))?;
    write_atomic(path, &png)
}
