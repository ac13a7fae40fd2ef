//! Charts a person can read, as SVG (plotters' SVG backend writes text as `<text>`, so no font
//! file is needed): loss curves with axes, ticks, labels, a legend and a title, the per-step
//! values as CSV, and a class-coloured scatter with the class names in its legend.
//! Tested by `tests/outputs.rs`.

use super::write_atomic;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

/// Ten distinct colours (matplotlib's tab10): class `c`, or series `i`, is drawn in
/// `PALETTE[c % 10]`.
pub const PALETTE: [[u8; 3]; 10] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x7f, 0x7f, 0x7f],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
];

/// The words around a chart.
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    pub title: &'a str,
    /// What the x axis counts, e.g. `step` or `epoch`.
    pub x: &'a str,
    pub y: &'a str,
}

/// Writes a line chart of `series` (name, one value per x = 1, 2, …) as an SVG of 800×500:
/// series i in `PALETTE[i % 10]`, named in the legend; a non-finite value breaks its line.
pub fn line_chart_svg(
    path: impl AsRef<Path>,
    labels: Labels<'_>,
    series: &[(&str, &[f64])],
) -> Result<()> {
    let op = "line_chart_svg";
    let (x_range, longest) = step_axis(op, series)?;
    let y_range = padded_range(series.iter().flat_map(|(_, v)| v.iter().copied()));
    let ticks = Some(longest.clamp(2, 10));
    let svg = svg_chart(op, (800, 500), labels, (x_range, y_range), ticks, |chart| {
        draw_lines(op, chart, series, 0)
    })?;
    write_atomic(path.as_ref(), svg.as_bytes())
}

/// Draws `series` as lines (series i in `PALETTE[(first + i) % 10]`), named in the legend; a
/// non-finite value breaks its line.
fn draw_lines(
    op: &'static str,
    chart: &mut Chart<'_, '_>,
    series: &[(&str, &[f64])],
    first: usize,
) -> Result<()> {
    for (i, (name, values)) in series.iter().enumerate() {
        let colour = colour(first + i);
        // One line per run of finite values: a NaN shows as a gap, not as a jump to 0.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (j, &v) in values.iter().enumerate() {
            match v.is_finite() {
                true => runs.last_mut().unwrap().push(((j + 1) as f64, v)),
                false => runs.push(Vec::new()),
            }
        }
        for (r, run) in runs.into_iter().filter(|r| !r.is_empty()).enumerate() {
            let drawn = if run.len() == 1 {
                chart.draw_series(run.into_iter().map(|p| Circle::new(p, 2, colour.filled())))
            } else {
                chart.draw_series(LineSeries::new(run, colour.stroke_width(2)))
            }
            .map_err(drawing(op))?;
            if r == 0 {
                drawn.label(*name).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            }
        }
    }
    Ok(())
}

/// Writes one line chart per series, stacked in one SVG (800 wide, 260 high per panel) under
/// `labels.title`, each panel with its own y axis (`labels.y`) and the series' name as its
/// caption: terms of very different size, such as a loss near 250 and a KL near 10, each stay
/// readable. Colours and gaps as [`line_chart_svg`].
pub fn line_panels_svg(
    path: impl AsRef<Path>,
    labels: Labels<'_>,
    series: &[(&str, &[f64])],
) -> Result<()> {
    let op = "line_panels_svg";
    let (x_range, longest) = step_axis(op, series)?;
    let ticks = Some(longest.clamp(2, 10));
    let mut svg = String::new();
    {
        let height = 60 + 260 * series.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (800, height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing(op))?;
        let root = root
            .titled(labels.title, ("sans-serif", 26))
            .map_err(drawing(op))?;
        for (i, (panel, one)) in root
            .split_evenly((series.len(), 1))
            .iter()
            .zip(series)
            .enumerate()
        {
            let y_range = padded_range(one.1.iter().copied());
            let panel_labels = Labels {
                title: one.0,
                ..labels
            };
            let mut chart = chart_on(
                op,
                panel,
                panel_labels,
                (x_range.clone(), y_range),
                ticks,
                20,
            )?;
            draw_lines(op, &mut chart, std::slice::from_ref(one), i)?;
            legend(op, &mut chart)?;
        }
        root.present().map_err(drawing(op))?;
    }
    write_atomic(path.as_ref(), svg.as_bytes())
}

/// The x range of line series (x = 1, 2, …) and the longest series' length; no series or an
/// empty one is an error.
fn step_axis(op: &'static str, series: &[(&str, &[f64])]) -> Result<(std::ops::Range<f64>, usize)> {
    if series.is_empty() {
        return Err(Error::bad(op, "no series to plot"));
    }
    if let Some((name, _)) = series.iter().find(|(_, v)| v.is_empty()) {
        return Err(Error::bad(op, format!("series `{name}` is empty")));
    }
    let longest = series.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    Ok((1.0..(longest as f64).max(2.0), longest))
}

/// Writes `series` (name, one value per x = 1, 2, …) as CSV: a header `x_name,name,…`, then one
/// row per x; a shorter series leaves its cells empty, a non-finite value is written as `NaN`,
/// `inf` or `-inf`.
pub fn series_csv(path: impl AsRef<Path>, x_name: &str, series: &[(&str, &[f64])]) -> Result<()> {
    let op = "series_csv";
    let names = std::iter::once(x_name).chain(series.iter().map(|(n, _)| *n));
    let mut csv = String::new();
    for (i, name) in names.enumerate() {
        if name.contains([',', '"', '\n']) {
            return Err(Error::bad(
                op,
                format!("column name `{name}` needs quoting"),
            ));
        }
        csv += if i == 0 { "" } else { "," };
        csv += name;
    }
    csv.push('\n');
    let longest = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    for j in 0..longest {
        csv += &(j + 1).to_string();
        for (_, values) in series {
            csv.push(',');
            if let Some(v) = values.get(j) {
                csv += &v.to_string();
            }
        }
        csv.push('\n');
    }
    write_atomic(path.as_ref(), csv.as_bytes())
}

/// Writes an 800×800 SVG scatter of `points`, point i as a dot of colour
/// `PALETTE[classes[i] % 10]`, with a legend naming each class that occurs by
/// `class_names[class]`. Non-finite points are skipped.
pub fn scatter_svg(
    path: impl AsRef<Path>,
    labels: Labels<'_>,
    points: &[(f32, f32)],
    classes: &[u8],
    class_names: &[&str],
) -> Result<()> {
    scatter_over_svg(path, labels, ("", &[]), points, classes, class_names)
}

/// [`scatter_svg`] over a `background` (legend name, points) drawn first as small light grey
/// dots, e.g. draws from a prior whose density the coloured points should follow; the axes
/// cover both.
pub fn scatter_over_svg(
    path: impl AsRef<Path>,
    labels: Labels<'_>,
    background: (&str, &[(f32, f32)]),
    points: &[(f32, f32)],
    classes: &[u8],
    class_names: &[&str],
) -> Result<()> {
    let op = "scatter_svg";
    if points.len() != classes.len() {
        return Err(Error::bad(
            op,
            format!("{} points but {} classes", points.len(), classes.len()),
        ));
    }
    if let Some(&c) = classes.iter().find(|&&c| c as usize >= class_names.len()) {
        return Err(Error::bad(
            op,
            format!("class {c} has no name ({} names)", class_names.len()),
        ));
    }
    let finite = |&&(x, y): &&(f32, f32)| x.is_finite() && y.is_finite();
    let all = || points.iter().chain(background.1).filter(finite);
    let x_range = padded_range(all().map(|p| p.0 as f64));
    let y_range = padded_range(all().map(|p| p.1 as f64));
    let svg = svg_chart(op, (800, 800), labels, (x_range, y_range), None, |chart| {
        let (name, under) = background;
        if !under.is_empty() {
            let grey = RGBColor(200, 200, 200);
            let dots = under
                .iter()
                .filter(finite)
                .map(|&(x, y)| (x as f64, y as f64));
            chart
                .draw_series(dots.map(|p| Circle::new(p, 1, grey.filled())))
                .map_err(drawing(op))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, grey.filled()));
        }
        for (c, name) in class_names.iter().enumerate() {
            let colour = colour(c);
            let mine: Vec<(f64, f64)> = points
                .iter()
                .zip(classes)
                .filter(|&(p, &k)| k as usize == c && finite(&p))
                .map(|(&(x, y), _)| (x as f64, y as f64))
                .collect();
            if mine.is_empty() {
                continue;
            }
            chart
                .draw_series(mine.into_iter().map(|p| Circle::new(p, 2, colour.filled())))
                .map_err(drawing(op))?
                .label(*name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
        Ok(())
    })?;
    write_atomic(path.as_ref(), svg.as_bytes())
}

/// Writes a grouped bar chart as an SVG of 800×500: one group per category at x = 1, 2, …
/// (labelled `x_name` 1, 2, … on the axis: name the categories in `labels.x`), one bar per
/// series in each group, series i in `PALETTE[i % 10]` and named in the legend. Every series
/// has one finite value per category.
pub fn bar_chart_svg(
    path: impl AsRef<Path>,
    labels: Labels<'_>,
    categories: usize,
    series: &[(&str, &[f64])],
) -> Result<()> {
    let op = "bar_chart_svg";
    if series.is_empty() || categories == 0 {
        return Err(Error::bad(op, "no bars to draw"));
    }
    if let Some((name, v)) = series
        .iter()
        .find(|(_, v)| v.len() != categories || v.iter().any(|x| !x.is_finite()))
    {
        let why = format!(
            "series `{name}` has {} values for {categories} categories, or a non-finite one",
            v.len()
        );
        return Err(Error::bad(op, why));
    }
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max);
    let y_range = 0.0..(top * 1.25).max(1.0);
    let x_range = 0.5..categories as f64 + 0.5;
    let width = 0.8 / series.len() as f64;
    let svg = svg_chart(
        op,
        (800, 500),
        labels,
        (x_range, y_range),
        Some(categories),
        |chart| {
            for (i, (name, values)) in series.iter().enumerate() {
                let colour = colour(i);
                let bars = values.iter().enumerate().map(|(c, &v)| {
                    let left = (c + 1) as f64 - 0.4 + i as f64 * width;
                    Rectangle::new([(left, 0.0), (left + width, v)], colour.filled())
                });
                chart
                    .draw_series(bars)
                    .map_err(drawing(op))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled())
                    });
            }
            Ok(())
        },
    )?;
    write_atomic(path.as_ref(), svg.as_bytes())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// An SVG chart of `size` pixels over the ranges `x` × `y`: white ground, the title, axes with
/// ticks, tick labels and their descriptions, a light grid; `draw` adds the series, and those it
/// labelled go into a legend in the upper right corner. `whole_x`: at most that many x ticks,
/// labelled only at whole numbers (x counts steps or epochs).
fn svg_chart(
    op: &'static str,
    size: (u32, u32),
    labels: Labels<'_>,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    whole_x: Option<usize>,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(drawing(op))?;
        let mut chart = chart_on(op, &root, labels, (x, y), whole_x, 26)?;
        draw(&mut chart)?;
        legend(op, &mut chart)?;
        root.present().map_err(drawing(op))?;
    }
    Ok(svg)
}

/// The axes of a chart on `area`: the title (at `caption` px), axes with ticks, tick labels
/// and their descriptions, a light grid. `whole_x` as in [`svg_chart`].
fn chart_on<'a, 'b>(
    op: &'static str,
    area: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    labels: Labels<'_>,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    whole_x: Option<usize>,
    caption: u32,
) -> Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(labels.title, ("sans-serif", caption))
        .margin(12)
        .x_label_area_size(54)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(drawing(op))?;
    let whole = |x: &f64| match x.fract() == 0.0 {
        true => format!("{x:.0}"),
        false => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(labels.x)
        .y_desc(labels.y)
        .axis_desc_style(("sans-serif", 19))
        .label_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235));
    if let Some(n) = whole_x {
        mesh.x_labels(n).x_label_formatter(&whole);
    }
    mesh.draw().map_err(drawing(op))?;
    Ok(chart)
}

/// The legend of the series `chart` labelled, in its upper right corner.
fn legend<'a, 'b: 'a>(op: &'static str, chart: &mut Chart<'a, 'b>) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 18))
        .draw()
        .map_err(drawing(op))
}

fn colour(i: usize) -> RGBColor {
    let [r, g, b] = PALETTE[i % 10];
    RGBColor(r, g, b)
}

/// A plotters error as ours.
fn drawing<E: std::error::Error + Send + Sync>(
    op: &'static str,
) -> impl Fn(DrawingAreaErrorKind<E>) -> Error {
    move |e| Error::bad(op, e.to_string())
}

/// The range of the finite values, widened by 5 % on each side; (−1, 1) around a single
/// value or when there is none.
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return -1.0..1.0;
    }
    if lo == hi {
        return lo - 1.0..hi + 1.0;
    }
    let pad = 0.05 * (hi - lo);
    lo - pad..hi + pad
}
