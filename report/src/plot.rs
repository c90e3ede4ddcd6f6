//! SVG line charts (plotters) for the report and the comparison.
//!
//! # Design
//! One chart type covers every plot: lines over a linear y axis, with an x axis that is
//! either linear (time), log10 (latency) or "nines" (percentile: x = −log10(1 − q), so 90 %,
//! 99 %, 99.9 % are evenly spaced). Non-linear axes are drawn as a linear axis over the
//! transformed value with labels mapped back. Series are downsampled to a bounded number of
//! points (min and max of each bucket, so spikes survive); vertical markers show faults.

use plotters::prelude::*;

use super::data::Marker;
use super::ReportError;

/// Points kept per series.
pub const MAX_POINTS: usize = 1200;

/// How the x values are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Linear,
    /// x must be > 0; drawn on a log10 scale.
    Log10,
    /// x is a quantile in [0, 1); drawn as −log10(1 − q).
    Nines,
}

/// One named line.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_axis: XAxis,
    pub series: &'a [Series],
    pub markers: &'a [Marker],
    /// Fixed y range, or `None` for 0 to the data's maximum.
    pub y_range: Option<(f64, f64)>,
    pub width: u32,
    pub height: u32,
}

/// Distinct, print-safe line colours (Tableau 10).
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// Keeps at most `max` points: the min and the max of each of `max / 2` buckets, in order.
pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let size = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max);
    for chunk in points.chunks(size) {
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p.1 < chunk[lo].1 {
                lo = i;
            }
            if p.1 > chunk[hi].1 {
                hi = i;
            }
        }
        let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        out.push(chunk[a]);
        if b != a {
            out.push(chunk[b]);
        }
    }
    out
}

fn transform(axis: XAxis, x: f64) -> Option<f64> {
    let v = match axis {
        XAxis::Linear => x,
        XAxis::Log10 => (x > 0.0).then(|| x.log10())?,
        XAxis::Nines => -(1.0 - x.clamp(0.0, 0.999_999)).log10(),
    };
    v.is_finite().then_some(v)
}

/// A short label for a number: 3 significant digits, no trailing zeros.
pub fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() { "0".into() } else { "–".into() };
    }
    let a = v.abs();
    let s = if a >= 1e6 {
        format!("{:.3e}", v)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    };
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn x_label(axis: XAxis, v: f64) -> String {
    match axis {
        XAxis::Linear => num(v),
        // Only whole decades and whole nines are labelled: in-between ticks read badly.
        XAxis::Log10 | XAxis::Nines if (v - v.round()).abs() > 1e-6 => String::new(),
        XAxis::Log10 => num(10f64.powf(v)),
        XAxis::Nines => {
            let p = 100.0 * (1.0 - 10f64.powf(-v));
            let s = format!("{p:.4}");
            format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// Draws `chart` as a standalone `<svg>` element, followed by its legend (HTML) when it
/// has named series.
pub fn line_chart(chart: &Chart<'_>) -> Result<String, ReportError> {
    let fail = |e: &dyn std::fmt::Display| ReportError::Plot { title: chart.title.to_owned(), message: e.to_string() };
    // A log axis over less than a decade and a half only makes odd tick labels.
    let x_axis = match chart.x_axis {
        XAxis::Log10 => {
            let xs = || chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| *x > 0.0);
            let lo = xs().fold(f64::INFINITY, f64::min);
            let hi = xs().fold(0.0, f64::max);
            if lo.is_finite() && hi / lo >= 30.0 {
                XAxis::Log10
            } else {
                XAxis::Linear
            }
        }
        other => other,
    };
    let x_desc =
        if x_axis == XAxis::Log10 { format!("{} (log scale)", chart.x_label) } else { chart.x_label.to_owned() };
    let series: Vec<(String, Vec<(f64, f64)>)> = chart
        .series
        .iter()
        .map(|s| {
            let pts: Vec<(f64, f64)> = downsample(&s.points, MAX_POINTS)
                .into_iter()
                .filter_map(|(x, y)| Some((transform(x_axis, x)?, y)).filter(|p| p.1.is_finite()))
                .collect();
            (s.name.clone(), pts)
        })
        .collect();
    let all = || series.iter().flat_map(|s| s.1.iter());
    let markers: Vec<(f64, &Marker)> =
        chart.markers.iter().filter_map(|m| Some((transform(x_axis, m.t)?, m))).collect();
    let mut x0 = all().map(|p| p.0).chain(markers.iter().map(|m| m.0)).fold(f64::INFINITY, f64::min);
    let mut x1 = all().map(|p| p.0).chain(markers.iter().map(|m| m.0)).fold(f64::NEG_INFINITY, f64::max);
    if !x0.is_finite() || !x1.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    // Head room above the data for the fault labels.
    let head = if markers.is_empty() { 1.08 } else { 1.3 };
    let (y0, mut y1) = chart.y_range.unwrap_or_else(|| (0.0, all().map(|p| p.1).fold(0.0, f64::max) * head));
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (chart.width, chart.height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut ctx = ChartBuilder::on(&root)
            .caption(chart.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| fail(&e))?;
        let axis = x_axis;
        let fx = move |v: &f64| x_label(axis, *v);
        let fy = |v: &f64| num(*v);
        ctx.configure_mesh()
            .x_desc(x_desc.as_str())
            .y_desc(chart.y_label)
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, (t, m)) in markers.iter().enumerate() {
            let colour = if m.recover { RGBColor(46, 139, 87) } else { RGBColor(200, 30, 30) };
            ctx.draw_series(std::iter::once(PathElement::new(vec![(*t, y0), (*t, y1)], colour.stroke_width(1))))
                .map_err(|e| fail(&e))?;
            // Staggered so that close events do not print over each other.
            let y = y1 - (y1 - y0) * (0.04 + 0.07 * (i % 4) as f64);
            let style = TextStyle::from(("sans-serif", 13).into_font()).color(&colour);
            ctx.draw_series(std::iter::once(Text::new(format!(" {}", m.label), (*t, y), style)))
                .map_err(|e| fail(&e))?;
        }
        for (i, (_, pts)) in series.iter().enumerate() {
            let c = colour(i);
            ctx.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2))).map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    // The legend is HTML below the chart, so that it never hides a line or a fault label.
    if series.len() > 1 || series.first().is_some_and(|s| !s.0.is_empty()) {
        svg.push_str("<div class=\"legend\">");
        for (i, (name, _)) in series.iter().enumerate() {
            let c = colour(i);
            svg.push_str(&format!(
                "<span><i style=\"background:#{:02x}{:02x}{:02x}\"></i>{}</span>",
                c.0,
                c.1,
                c.2,
                crate::markup::esc(name)
            ));
        }
        svg.push_str("</div>");
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_extremes_and_order() {
        let pts: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, if i == 4321 { 99.0 } else { 1.0 })).collect();
        let d = downsample(&pts, 100);
        assert!(d.len() <= 100);
        assert!(d.iter().any(|p| p.1 == 99.0));
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn labels() {
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1234.0), "1234");
        assert_eq!(x_label(XAxis::Nines, 2.0), "99%");
        assert_eq!(x_label(XAxis::Nines, 3.0), "99.9%");
        assert_eq!(x_label(XAxis::Log10, 1.0), "10");
    }

    #[test]
    fn a_chart_is_an_svg_with_escaped_text() {
        let series = [Series { name: "a<b>&c".into(), points: vec![(0.0, 1.0), (1.0, 2.0)] }];
        let markers = [Marker { t: 0.5, label: "<kill>".into(), recover: false }];
        let svg = line_chart(&Chart {
            title: "t & u",
            x_label: "x",
            y_label: "y",
            x_axis: XAxis::Linear,
            series: &series,
            markers: &markers,
            y_range: None,
            width: 400,
            height: 300,
        })
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("a&lt;b&gt;&amp;c") && svg.contains("&lt;kill&gt;") && svg.contains("t &amp; u"), "{svg}");
        assert!(!svg.contains("<kill>"));
    }

    #[test]
    fn empty_charts_still_draw() {
        let svg = line_chart(&Chart {
            title: "nothing",
            x_label: "x",
            y_label: "y",
            x_axis: XAxis::Log10,
            series: &[],
            markers: &[],
            y_range: Some((0.0, 1.0)),
            width: 300,
            height: 200,
        })
        .unwrap();
        assert!(svg.contains("<svg"));
    }
}
