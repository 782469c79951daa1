//! The demos' line charts, as SVG: one numbered x axis (epochs or layers), one line per run.

use crate::{Result, ToolError};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use std::path::Path;

/// One line of a chart.
pub struct Line {
    pub label: String,
    /// (x, y) points, x from 1.
    pub points: Vec<(usize, f64)>,
    pub color: RGBColor,
    pub width: u32,
}

/// Titles, axis descriptions and the y labels' format of a chart.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    pub y_label: &'a dyn Fn(&f64) -> String,
    pub legend: SeriesLabelPosition,
}

/// Draws `lines` over x in `1..x_max` and the y range `y` (linear `lo..hi` or `(lo..hi).log_scale()`)
/// into an SVG file at `path`.
pub fn line_chart<Y>(path: &Path, axes: &Axes, x_max: usize, y: Y, lines: &[Line]) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: String| ToolError::Write {
        path: path.display().to_string(),
        message: e,
    };
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(axes.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(1usize..x_max.max(2), y)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .y_label_formatter(axes.y_label)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for line in lines {
        let style = line.color.stroke_width(line.width);
        chart
            .draw_series(LineSeries::new(line.points.clone(), style))
            .map_err(|e| err(e.to_string()))?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(axes.legend.clone())
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
