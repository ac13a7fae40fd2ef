//! What a run leaves for a person to read: metrics.json (finite or not written), SVG charts with
//! their words in them, the per-step CSV, and PNG grids with labels drawn in the built-in font.
//! Run with `cargo test --release --test outputs` (no GPU needed).

mod common;

use common::TempDir;
use latent::Error;
use latent::io::{self, GridLabels, Labels, Metrics, PALETTE};

#[test]
fn metrics_json_is_valid_and_a_non_finite_figure_is_refused_by_name() {
    let dir = TempDir::new("metrics");
    let path = dir.path("metrics.json");
    let mut m = Metrics::new("mlp-vae");
    m.integer("epochs", 10)
        .number("test_neg_elbo", 241.37)
        .optional("train_usage", None)
        .flag("dead_code_reset", true)
        .text("objective", "say \"Elbo\"")
        .numbers("unit_variances", [0.5, 1e-7]);
    io::write_metrics(&path, &m).unwrap();
    let json = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        json,
        "{\n  \"model\": \"mlp-vae\",\n  \"epochs\": 10,\n  \"test_neg_elbo\": 241.37,\n  \
         \"train_usage\": null,\n  \"dead_code_reset\": true,\n  \"objective\": \"say \\\"Elbo\\\"\",\n  \
         \"unit_variances\": [0.5, 0.0000001]\n}\n"
    );

    // A NaN inside a list, or an infinite figure: an error naming it, and the good file stays.
    for (bad, name) in [
        (
            Metrics::new("x")
                .numbers("unit_variances", [1.0, f64::NAN])
                .clone(),
            "unit_variances[1]",
        ),
        (
            Metrics::new("x").number("iwae_nll", f64::INFINITY).clone(),
            "iwae_nll",
        ),
    ] {
        match io::write_metrics(&path, &bad) {
            Err(e @ Error::NonFiniteMetric { .. }) => {
                assert!(e.to_string().contains(name), "{e}");
            }
            other => panic!("expected NonFiniteMetric for {name}, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), json);
    }
    assert!(Metrics::new("x").text("model", "y").to_json().is_err());
}

#[test]
fn a_line_chart_has_title_axis_labels_ticks_and_a_legend_as_svg_text() {
    let dir = TempDir::new("chart");
    let path = dir.path("loss_curve.svg");
    let loss = [300.0, 260.0, f64::NAN, 245.0, 241.0];
    let kl = [20.0, 24.0, 25.0];
    let labels = Labels {
        title: "vae: training loss",
        x: "step",
        y: "nats per image",
    };
    io::line_chart_svg(&path, labels, &[("loss", &loss), ("KL", &kl)]).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    // Every word is a <text> element: the SVG needs no font file to show it.
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].trim())
        .collect();
    for word in [
        "vae: training loss",
        "step",
        "nats per image",
        "loss",
        "KL",
        "1",
        "5",
        "250.0",
        "300.0",
    ] {
        assert!(texts.contains(&word), "no <text>{word}</text> in {texts:?}");
    }
    // Each series drawn in its palette colour; the NaN splits the loss into two lines.
    let hex = |c: [u8; 3]| format!("#{:02X}{:02X}{:02X}", c[0], c[1], c[2]);
    let lines = |c| {
        svg.matches(&format!(
            "<polyline fill=\"none\" opacity=\"1\" stroke=\"{c}\""
        ))
        .count()
    };
    assert_eq!(
        lines(hex(PALETTE[0])),
        2 + 1,
        "two runs of loss and its legend mark"
    );
    assert_eq!(lines(hex(PALETTE[1])), 1 + 1, "KL and its legend mark");
    assert!(matches!(
        io::line_chart_svg(&path, labels, &[("empty", &[])]),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn stacked_panels_give_each_term_its_own_y_axis() {
    let dir = TempDir::new("panels");
    let path = dir.path("loss_curve.svg");
    let loss = [300.0, 260.0, 250.0, 245.0];
    let kl = [8.0, 10.0, 11.0, 12.0];
    let labels = Labels {
        title: "vae: training terms",
        x: "step",
        y: "nats per image",
    };
    io::line_panels_svg(&path, labels, &[("recon", &loss), ("KL", &kl)]).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].trim())
        .collect();
    // The title once, each panel's caption, and y tick labels on both scales: the KL panel is
    // ticked near its own values, not on the loss's 250–300 axis.
    assert_eq!(
        texts
            .iter()
            .filter(|t| **t == "vae: training terms")
            .count(),
        1
    );
    for word in ["recon", "KL", "300.0", "10.0", "12.0"] {
        assert!(texts.contains(&word), "no <text>{word}</text> in {texts:?}");
    }
    assert_eq!(texts.iter().filter(|t| **t == "nats per image").count(), 2);
    assert!(matches!(
        io::line_panels_svg(&path, labels, &[]),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn a_bar_chart_draws_one_bar_per_series_and_category_and_refuses_ragged_series() {
    let dir = TempDir::new("bars");
    let path = dir.path("kl_units.svg");
    let labels = Labels {
        title: "ladder_vae: units carrying KL",
        x: "stochastic layer",
        y: "units",
    };
    let (a, b) = ([12.0, 4.0, 2.0], [3.0, 0.0, 1.0]);
    io::bar_chart_svg(&path, labels, 3, &[("warm-up", &a), ("none", &b)]).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    for word in [
        "ladder_vae: units carrying KL",
        "stochastic layer",
        "warm-up",
        "none",
    ] {
        assert!(svg.contains(word), "{word} is not in the chart");
    }
    // Three bars and a legend mark per series, in its palette colour.
    let hex = |c: [u8; 3]| format!("fill=\"#{:02X}{:02X}{:02X}\"", c[0], c[1], c[2]);
    assert_eq!(svg.matches(&hex(PALETTE[0])).count(), 3 + 1, "{svg}");
    assert_eq!(svg.matches(&hex(PALETTE[1])).count(), 3 + 1);
    for bad in [&[1.0, 2.0][..], &[1.0, f64::NAN, 2.0][..]] {
        assert!(matches!(
            io::bar_chart_svg(&path, labels, 3, &[("ragged", bad)]),
            Err(Error::BadInput { .. })
        ));
    }
}

#[test]
fn the_per_step_series_are_written_as_csv() {
    let dir = TempDir::new("csv");
    let path = dir.path("losses.csv");
    io::series_csv(
        &path,
        "step",
        &[("loss", &[3.5, f64::NAN]), ("KL", &[0.25])],
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "step,loss,KL\n1,3.5,0.25\n2,NaN,\n"
    );
    assert!(io::series_csv(&path, "step", &[("a,b", &[1.0])]).is_err());
}

#[test]
fn the_latent_scatter_names_the_classes_in_its_legend() {
    let dir = TempDir::new("scatter");
    let path = dir.path("latent_scatter.svg");
    let points = [(-1.0, -1.0), (1.0, 1.0), (0.5, -0.5), (f32::NAN, 0.0)];
    let names = ["T-shirt/top", "Trouser", "Pullover", "Dress"];
    let labels = Labels {
        title: "posterior means",
        x: "mu[0]",
        y: "mu[1]",
    };
    io::scatter_svg(&path, labels, &points, &[0, 1, 1, 3], &names).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    for word in ["T-shirt/top", "Trouser", "posterior means", "mu[0]"] {
        assert!(svg.contains(&format!("\n{word}\n</text>")), "no {word}");
    }
    // Classes without a point (Pullover) and non-finite points (the Dress) are left out.
    assert!(!svg.contains("Pullover") && !svg.contains("Dress"));
    assert!(matches!(
        io::scatter_svg(&path, labels, &points, &[0, 1, 9, 0], &names),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn codes_over_prior_draws_name_both_and_cover_both_ranges() {
    let dir = TempDir::new("scatter_over");
    let path = dir.path("latent_codes.svg");
    let labels = Labels {
        title: "codes over the prior",
        x: "z1",
        y: "z2",
    };
    let draws = [(-9.0, 0.0), (0.0, 7.5), (f32::NAN, 1.0)];
    let codes = [(0.1, 0.2), (0.3, -0.4)];
    let names = ["Trouser"];
    io::scatter_over_svg(
        &path,
        labels,
        ("prior draws", &draws),
        &codes,
        &[0, 0],
        &names,
    )
    .unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    for word in ["prior draws", "Trouser", "codes over the prior"] {
        assert!(svg.contains(&format!("\n{word}\n</text>")), "no {word}");
    }
    // The axes reach the background's extremes (−9 and 7.5), not only the codes' range.
    assert!(
        svg.contains(">\n-9") || svg.contains("\n-9.0\n"),
        "x axis misses -9"
    );
    assert!(
        svg.contains("\n7\n") || svg.contains("\n7.0\n"),
        "y axis misses 7"
    );
    // Without a background the plain scatter draws only the codes.
    io::scatter_svg(&path, labels, &codes, &[0, 0], &names).unwrap();
    let plain = std::fs::read_to_string(&path).unwrap();
    assert!(!plain.contains("prior draws"));
}

#[test]
fn a_labelled_grid_puts_each_label_beside_its_row_and_the_title_above() {
    let dir = TempDir::new("labelled");
    let path = dir.path("grid.png");
    // Two rows of two black 10×10 images, padding 2.
    let images = vec![0.0f32; 4 * 100];
    let rows = ["ab", "I"];
    let labels = GridLabels {
        title: Some("T"),
        rows: &rows,
    };
    io::save_labelled_grid(&path, &images, 2, (10, 10), 2, labels).unwrap();
    let img = image::open(&path).unwrap().to_luma8();
    // Labels at scale 2: "ab" is (2·6 − 1)·2 = 22 px wide, plus 4 px on each side: the grid
    // (26×26) starts at x = 30, below a title band of 14 + 8 = 22 px.
    let (left, top) = (io::text_width("ab", 2) + 8, 22);
    assert_eq!(img.dimensions(), (left as u32 + 26, top + 26));
    let ink = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (y0..y1).any(|y| (x0..x1).any(|x| img.get_pixel(x, y).0[0] == 0))
    };
    assert!(
        ink(0, left as u32, top, top + 14),
        "label of row 0 beside it"
    );
    assert!(
        ink(0, left as u32, top + 14, top + 26),
        "label of row 1 beside it"
    );
    assert!(ink(0, 30, 0, top), "the title above");
    // "I" is right-aligned: its ink sits next to the grid, not at the left edge.
    assert!(!ink(0, 10, top + 14, top + 26));
    assert_eq!(img.get_pixel(left as u32 + 2, top + 2).0[0], 0, "image 0");
    assert!(matches!(
        io::save_labelled_grid(
            &path,
            &images,
            2,
            (10, 10),
            2,
            GridLabels {
                title: None,
                rows: &["x"]
            }
        ),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn a_labelled_rgb_grid_keeps_the_channels_and_draws_the_labels_in_black() {
    let dir = TempDir::new("labelled-rgb");
    let path = dir.path("grid.png");
    // One row of two 10×10 images, padding 2: the first pure red, the second pure blue.
    let mut images = vec![0.0f32; 2 * 3 * 100];
    images[..100].fill(1.0);
    images[300 + 200..].fill(1.0);
    let labels = GridLabels {
        title: None,
        rows: &["r"],
    };
    io::save_labelled_planes(&path, &images, 3, 1, (10, 10), 2, labels).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    let left = io::text_width("r", 2) as u32 + 8;
    assert_eq!(img.dimensions(), (left + 26, 14));
    assert_eq!(img.get_pixel(left + 2, 2).0, [255, 0, 0], "image 0 is red");
    assert_eq!(
        img.get_pixel(left + 23, 11).0,
        [0, 0, 255],
        "image 1 is blue"
    );
    assert_eq!(
        img.get_pixel(left, 0).0,
        [255, 255, 255],
        "padding is white"
    );
    let black = (0..14).any(|y| (0..left).any(|x| img.get_pixel(x, y).0 == [0, 0, 0]));
    assert!(black, "the row label is drawn in black in every channel");
}
