//! `compare.html`: both runs side by side, self-contained like report.html.

use std::fmt::Write as _;

use std::path::Path;

use super::diff::{CompareError, Comparison, Overlay, SeriesCheck};
use crate::html::{esc, fix, STYLE};
use crate::plot::{self, Chart, Series, XAxis};
use crate::ReportError;

/// Overlaid series per chart group (the worst first).
const MAX_CHARTS: usize = 8;

/// `labels` are the x and y axis descriptions.
fn overlay_chart(
    o: &Overlay,
    title: &str,
    labels: (&str, &str),
    axis: XAxis,
    scale: f64,
    width: u32,
    y_range: Option<(f64, f64)>,
) -> Result<String, ReportError> {
    let (x, y) = labels;
    let s = |name: &str, pts: &[(f64, f64)]| Series {
        name: name.to_owned(),
        points: pts.iter().map(|p| (p.0, p.1 * scale)).collect(),
    };
    let series = [s("A", &o.a), s("B", &o.b)];
    plot::line_chart(&Chart {
        title,
        x_label: x,
        y_label: y,
        x_axis: axis,
        series: &series,
        markers: &[],
        y_range,
        width,
        height: 300,
    })
}

fn series_table(h: &mut String, what: &str, checks: &[SeriesCheck]) {
    let _ = write!(h, "<table><tr><th class=\"l\">{}</th><th>mean A</th><th>mean B</th><th>error</th><th>threshold</th><th>points</th><th class=\"l\">verdict</th></tr>", esc(what));
    for c in checks {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{:.2} %</td><td>{:.2} %</td><td>{:.4}</td><td>{:.4}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&c.name),
            c.mean_a * 100.0,
            c.mean_b * 100.0,
            c.mare,
            c.threshold,
            c.points,
            verdict(c.pass)
        );
    }
    h.push_str("</table>");
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "<span class=\"badge ok\">pass</span>"
    } else {
        "<span class=\"badge bad\">FAIL</span>"
    }
}

/// The worst `MAX_CHARTS` overlays by error.
fn worst<'a>(checks: &[SeriesCheck], overlays: &'a [Overlay]) -> Vec<(&'a Overlay, f64)> {
    let mut v: Vec<(&Overlay, f64)> =
        overlays.iter().filter_map(|o| Some((o, checks.iter().find(|c| c.name == o.name)?.mare))).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(MAX_CHARTS);
    v
}

/// Renders the comparison page.
impl Comparison {
    /// Writes compare.html into `out`.
    pub fn write_html(&self, out: &Path) -> Result<(), CompareError> {
        let html = render(self).map_err(CompareError::Plot)?;
        super::diff::write_atomic(&out.join("compare.html"), html.as_bytes())
    }
}

pub fn render(c: &Comparison) -> Result<String, ReportError> {
    let mut h = String::with_capacity(128 * 1024);
    let title = format!("diorama compare: {}", c.a.name);
    let _ = write!(h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>", esc(&title));
    let _ = write!(h, "<h1>{} {}</h1>", esc(&title), verdict(c.pass));
    let _ = write!(
        h,
        "<table><tr><th class=\"l\">run</th><th class=\"l\">directory</th><th>TDF</th><th class=\"l\">fidelity</th></tr>\
         <tr><td class=\"l\">A (reference)</td><td class=\"l\"><code>{}</code></td><td>{}</td><td class=\"l\">{}</td></tr>\
         <tr><td class=\"l\">B</td><td class=\"l\"><code>{}</code></td><td>{}</td><td class=\"l\">{}</td></tr></table>",
        esc(&c.a.dir.display().to_string()),
        plot::num(c.a.tdf),
        esc(&c.a.fidelity),
        esc(&c.b.dir.display().to_string()),
        plot::num(c.b.tdf),
        esc(&c.b.fidelity)
    );
    if !c.failures.is_empty() {
        h.push_str("<h2>Failures</h2><ul>");
        for f in &c.failures {
            let _ = write!(h, "<li>{}</li>", esc(f));
        }
        h.push_str("</ul>");
    }
    if !c.notes.is_empty() {
        h.push_str("<p class=\"note\">Not compared:</p><ul class=\"note\">");
        for n in &c.notes {
            let _ = write!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>");
    }
    if !c.checks.is_empty() {
        h.push_str("<h2>Requests</h2><p class=\"note\">distance (decisive): largest gap between the two corrected-latency CDFs once either may shift sideways by the tolerance. KS: the same gap without tolerance; wasserstein: mean distance of matched quantiles over A's median (both informational). Others: relative error |B − A| / |A|.</p>");
        h.push_str("<table><tr><th class=\"l\">figure</th><th>A</th><th>B</th><th>error</th><th>threshold</th><th class=\"l\">verdict</th></tr>");
        for k in &c.checks {
            let unit = match k.name.as_str() {
                "throughput" => " req/s",
                "ks" | "distance" | "wasserstein" => "",
                _ => " ms",
            };
            let cell = |v: Option<f64>| if k.a.is_none() { "–".to_owned() } else { format!("{}{unit}", fix(v, 3)) };
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td class=\"l\">{}</td></tr>",
                esc(&k.name),
                cell(k.a),
                cell(k.b),
                fix(k.value, 4),
                k.threshold,
                if k.informational { "(reported)" } else { verdict(k.pass) }
            );
        }
        h.push_str("</table>");
        h.push_str(&overlay_chart(
            &c.cdf,
            "Completion-time CDF",
            ("latency (ms)", "fraction of requests"),
            XAxis::Log10,
            1.0,
            1060,
            Some((0.0, 1.0)),
        )?);
        h.push_str(&overlay_chart(
            &c.throughput,
            "Throughput",
            ("virtual time since the run's start (s)", "completed per virtual second"),
            XAxis::Linear,
            1.0,
            1060,
            None,
        )?);
    }
    let time = "virtual time (s)";
    if !c.nodes.is_empty() {
        h.push_str("<h2>CPU per node</h2><p class=\"note\">Both runs resampled on one virtual-time grid; error = mean |B − A| / max(mean A, 5 %).</p>");
        series_table(&mut h, "node", &c.nodes);
        h.push_str("<div class=\"grid\">");
        for (o, e) in worst(&c.nodes, &c.cpu_series) {
            let svg = overlay_chart(
                o,
                &format!("{} (error {e:.3})", o.name),
                (time, "% of perceived machine"),
                XAxis::Linear,
                100.0,
                520,
                None,
            )?;
            let _ = write!(h, "<div>{svg}</div>");
        }
        h.push_str("</div>");
    }
    if !c.links.is_empty() {
        h.push_str("<h2>Link utilization</h2>");
        series_table(&mut h, "link/direction", &c.links);
        h.push_str("<div class=\"grid\">");
        for (o, e) in worst(&c.links, &c.link_series) {
            let svg = overlay_chart(
                o,
                &format!("{} (error {e:.3})", o.name),
                (time, "% of link rate"),
                XAxis::Linear,
                100.0,
                520,
                None,
            )?;
            let _ = write!(h, "<div>{svg}</div>");
        }
        h.push_str("</div>");
    }
    let _ = writeln!(
        h,
        "<p class=\"note\">Written by diorama {} (compare schema {}).</p></body></html>",
        esc(env!("CARGO_PKG_VERSION")),
        super::diff::SCHEMA
    );
    Ok(h)
}
