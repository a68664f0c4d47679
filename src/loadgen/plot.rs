//! SVG plots of sweep results: throughput against p99 latency, and memory against SKUs.
//!
//! Depends on the report types of this module only.

use super::LoadgenError;
use plotters::prelude::*;
use std::path::Path;

/// One labelled line of (x, y) points.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

fn plot_error(error: impl std::fmt::Display) -> LoadgenError {
    LoadgenError::Plot(error.to_string())
}

/// Draws `series` as lines with points into an SVG file at `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), LoadgenError> {
    let max = |pick: fn(&(f64, f64)) -> f64| {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(pick))
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.1
    };
    let (x_max, y_max) = (max(|p| p.0), max(|p| p.1));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(plot_error)?;
    let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (index, line) in series.iter().enumerate() {
        let color = palette[index % palette.len()];
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|&point| Circle::new(point, 4, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        line_chart(
            &path,
            "throughput vs p99",
            "movements/s",
            "p99 ms",
            &[Series {
                label: "rest".to_owned(),
                points: vec![(1000.0, 2.0), (2000.0, 5.0)],
            }],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"));
        assert!(svg.contains("rest"));
    }
}
