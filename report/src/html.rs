//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing fetched).
//!
//! Every piece of text that comes from a results directory goes through [`esc`].

use std::fmt::Write as _;

use serde_json::Value;

use super::data::RunData;
use super::plot::{self, Chart, Series, XAxis};
use super::requests::cdf_points;
use super::summary::{Latency, Summary};
use super::ReportError;
pub use crate::markup::esc;
pub(crate) use crate::markup::fix;

/// Lines per chart before the rest are summarised as "N more".
const MAX_LINES: usize = 10;

/// The page's style sheet, shared with the comparison page.
pub(crate) const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}\
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.25em;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:8px 0 16px}\
th,td{border:1px solid #ddd;padding:4px 10px;text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f5f5f5}td.l,th.l{text-align:left}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600}\
.ok{background:#d9f2dd;color:#17622a}.bad{background:#fadbd8;color:#8e1b10}.unknown{background:#eee;color:#555}\
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid svg{border:1px solid #eee}\
.note{color:#666;font-size:.92em}.legend{font-size:.9em;margin:0 0 14px 70px}.legend span{margin-right:16px;white-space:nowrap}\
.legend i{display:inline-block;width:18px;height:3px;margin:0 6px 4px 0;vertical-align:middle}.grid>div{display:inline-block}code{background:#f3f3f3;padding:0 3px}";

fn verdict_badge(verdict: &str) -> String {
    let class = match verdict {
        "ok" => "ok",
        "unfaithful" => "bad",
        _ => "unknown",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(verdict))
}

fn flag_text(flag: &Value) -> String {
    let get = |k: &str| flag.get(k).and_then(Value::as_str);
    let mut s = get("kind").unwrap_or("?").to_owned();
    if let Some(n) = get("node") {
        let _ = write!(s, " (node {n})");
    }
    if let Some(l) = get("link") {
        let _ = write!(s, " (link {l})");
    }
    if let Some(d) = get("detail") {
        let _ = write!(s, ": {d}");
    }
    s
}

fn chart(
    title: &str,
    x: &str,
    y: &str,
    axis: XAxis,
    series: &[Series],
    run: &RunData,
    y_range: Option<(f64, f64)>,
) -> Result<String, ReportError> {
    let markers = if axis == XAxis::Linear && x.starts_with("virtual time") { run.markers.as_slice() } else { &[] };
    plot::line_chart(&Chart {
        title,
        x_label: x,
        y_label: y,
        x_axis: axis,
        series,
        markers,
        y_range,
        width: 1060,
        height: 360,
    })
}

/// Up to `MAX_LINES` series, the highest `key` first, and a note on the rest.
fn top<'a, T>(items: impl Iterator<Item = (&'a String, &'a T)>, key: impl Fn(&T) -> f64) -> (Vec<&'a String>, String)
where
    T: 'a,
{
    let mut all: Vec<(&String, f64)> = items.map(|(n, t)| (n, key(t))).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let more = all.len().saturating_sub(MAX_LINES);
    let note = if more > 0 {
        format!("<p class=\"note\">The {MAX_LINES} highest of {} are drawn; the table lists all.</p>", all.len())
    } else {
        String::new()
    };
    let mut names: Vec<&String> = all.into_iter().take(MAX_LINES).map(|(n, _)| n).collect();
    names.sort();
    (names, note)
}

fn latency_cells(l: Option<&Latency>) -> String {
    let v = |f: fn(&Latency) -> f64| fix(l.map(f), 3);
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        v(|l| l.min),
        v(|l| l.p50),
        v(|l| l.p90),
        v(|l| l.p99),
        v(|l| l.p999),
        v(|l| l.mean),
        v(|l| l.max)
    )
}

/// The charts of one L4 balancer's telemetry (see [`crate::balancers`]).
fn balancer_section(h: &mut String, b: &crate::balancers::BalancerSeries, run: &RunData) -> Result<(), ReportError> {
    let _ = write!(
        h,
        "<h2>Balancer {}</h2><p class=\"note\">L4 balancer in the emulated data path (docs/l4lb.md). Slot shares are of the Maglev table; estimates are in-band (client packets only), per estimator epoch, against the mean latency of the requests the clients completed in that epoch.</p>",
        esc(&b.name)
    );
    let named = |m: &std::collections::BTreeMap<String, Vec<(f64, f64)>>, suffix: &str| -> Vec<Series> {
        m.iter().map(|(n, p)| Series { name: format!("{n}{suffix}"), points: p.clone() }).collect()
    };
    h.push_str(&chart(
        "Slot share per backend",
        "virtual time (s)",
        "share of slots",
        XAxis::Linear,
        &named(&b.shares, ""),
        run,
        Some((0.0, 1.0)),
    )?);
    let timeouts = [Series { name: "timeout chosen".into(), points: b.timeouts.clone() }];
    h.push_str(&chart(
        "ENSEMBLETIMEOUT: timeout chosen per epoch",
        "virtual time (s)",
        "timeout (µs)",
        XAxis::Linear,
        &timeouts,
        run,
        None,
    )?);
    let mut est = named(&b.estimates, " (in-band estimate)");
    est.push(Series { name: "client-measured (mean)".into(), points: b.client_ms.clone() });
    h.push_str(&chart(
        "Estimated latency per backend against the client's",
        "virtual time (s)",
        "latency (ms)",
        XAxis::Linear,
        &est,
        run,
        None,
    )?);
    Ok(())
}

/// Renders the report page.
pub fn render(run: &RunData, s: &Summary) -> Result<String, ReportError> {
    let mut h = String::with_capacity(256 * 1024);
    let title = format!("diorama report: {}", s.run.name);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(
        h,
        "<h1>{}</h1><p class=\"sub\">{} · TDF {} · {:.2} s virtual · results in <code>{}</code></p>",
        esc(&title),
        if s.run.success { "run succeeded" } else { "run FAILED" },
        plot::num(s.run.tdf),
        s.run.virtual_duration_s,
        esc(&run.dir.canonicalize().unwrap_or_else(|_| run.dir.clone()).display().to_string())
    );

    // The summary table: the figures an SLO is written against.
    let lat = s.latency_ms.as_ref();
    let row = |h: &mut String, k: &str, v: String| {
        let _ = write!(h, "<tr><th class=\"l\">{}</th><td>{v}</td></tr>", esc(k));
    };
    h.push_str("<h2>Summary</h2><table>");
    row(
        &mut h,
        "Outcome",
        esc(&format!(
            "{}{}",
            if s.run.success { "succeeded" } else { "failed" },
            run.info.end_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        )),
    );
    row(&mut h, "Fidelity", verdict_badge(&s.fidelity.verdict));
    if let Some(r) = run.info.host_cache_decay {
        // The run's own warning, when it gave one (the threshold is the run engine's).
        let text = match &run.info.host_cache_warning {
            Some(w) => w.clone(),
            None => format!("the same work costs {r:.2}x the CPU at this TDF"),
        };
        row(&mut h, "Host cache decay", esc(&text));
    }
    if !run.info.mechanisms.is_empty() {
        row(&mut h, "Dilation", esc(&dilation_line(&run.info.mechanisms)));
    }
    row(
        &mut h,
        "Undilated nodes",
        if run.info.allow_undilated { "allowed by the topology (allow_undilated)" } else { "refused" }.to_owned(),
    );
    if run.requests.is_some() {
        row(&mut h, "Requests", s.requests.total.to_string());
        row(&mut h, "Completed", s.requests.completed.to_string());
        row(&mut h, "Errors", s.requests.errors.to_string());
        row(&mut h, "Error rate", format!("{:.3} %", s.requests.error_rate * 100.0));
        row(&mut h, "Throughput (completed / virtual s)", format!("{:.1}", s.throughput_rps));
        for (k, f) in [
            ("Latency p50 (ms)", lat.map(|l| l.p50)),
            ("Latency p90 (ms)", lat.map(|l| l.p90)),
            ("Latency p99 (ms)", lat.map(|l| l.p99)),
            ("Latency p99.9 (ms)", lat.map(|l| l.p999)),
            ("Latency mean (ms)", lat.map(|l| l.mean)),
        ] {
            row(&mut h, k, fix(f, 3));
        }
    } else {
        row(&mut h, "Requests", "no load generator output in this run".to_owned());
    }
    h.push_str("</table>\n");
    if s.fidelity.flags.is_empty() {
        let _ = write!(
            h,
            "<p class=\"note\">{}</p>",
            if s.fidelity.verdict == "unknown" {
                "This run.json carries no fidelity verdict."
            } else {
                "No fidelity flags were raised."
            }
        );
    } else {
        h.push_str("<p><b>Fidelity flags</b></p><ul>");
        for f in &s.fidelity.flags {
            let _ = write!(h, "<li>{}</li>", esc(&flag_text(f)));
        }
        h.push_str("</ul>");
    }

    if let Some(req) = &run.requests {
        h.push_str("<h2>Latency</h2>");
        if lat.is_some() {
            h.push_str("<p class=\"note\">Corrected latency counts from each request's scheduled send time (coordinated omission corrected); uncorrected from its actual send. Completed requests only.</p>");
            h.push_str("<table><tr><th class=\"l\"></th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>mean</th><th>max</th></tr>");
            let _ = write!(h, "<tr><th class=\"l\">corrected (ms)</th>{}</tr>", latency_cells(lat));
            let _ = write!(
                h,
                "<tr><th class=\"l\">uncorrected (ms)</th>{}</tr></table>",
                latency_cells(s.latency_uncorrected_ms.as_ref())
            );
            let cdf = |hist, name: &str| Series { name: name.to_owned(), points: cdf_points(hist, 1e-6, 400) };
            let series = [cdf(&req.corrected, "corrected"), cdf(&req.uncorrected, "uncorrected")];
            h.push_str(&chart(
                "Latency CDF",
                "latency (ms)",
                "fraction of requests",
                XAxis::Log10,
                &series,
                run,
                Some((0.0, 1.0)),
            )?);
            // Percentiles beyond 1 − 1/n say nothing more than the maximum: not drawn.
            let pct = |hist: &hdrhistogram::Histogram<u64>, name: &str| Series {
                name: name.to_owned(),
                points: cdf_points(hist, 1e-6, 400)
                    .into_iter()
                    .filter(|p| p.1 < 1.0 && p.1 <= 1.0 - 1.0 / hist.len().max(2) as f64)
                    .map(|(ms, q)| (q, ms))
                    .collect(),
            };
            let series = [pct(&req.corrected, "corrected"), pct(&req.uncorrected, "uncorrected")];
            h.push_str(&chart(
                "Latency by percentile",
                "percentile",
                "latency (ms)",
                XAxis::Nines,
                &series,
                run,
                None,
            )?);
        } else {
            h.push_str("<p>No request completed: there is no latency to show.</p>");
        }
        if !req.error_kinds.is_empty() {
            h.push_str("<table><tr><th class=\"l\">error</th><th>count</th></tr>");
            for (k, n) in &req.error_kinds {
                let _ = write!(h, "<tr><td class=\"l\">{}</td><td>{n}</td></tr>", esc(k));
            }
            h.push_str("</table>");
        }

        h.push_str("<h2>Throughput</h2>");
        let completed: Vec<(f64, f64)> = s.throughput_series.iter().map(|p| (p.0 + 0.5, p.1 as f64)).collect();
        let errors: Vec<(f64, f64)> = s.throughput_series.iter().map(|p| (p.0 + 0.5, p.2 as f64)).collect();
        let mut series = vec![Series { name: "completed / s".into(), points: completed }];
        if s.requests.errors > 0 {
            series.push(Series { name: "errors / s".into(), points: errors });
        }
        h.push_str(&chart(
            "Throughput",
            "virtual time since the run's start (s)",
            "requests per virtual second",
            XAxis::Linear,
            &series,
            run,
            None,
        )?);
        if !run.markers.is_empty() {
            h.push_str("<p class=\"note\">Red lines: faults injected; green lines: faults undone.</p>");
        }

        if let Some(tiers) = &s.tiers_ms {
            h.push_str("<h2>Per-tier breakdown</h2><p class=\"note\">Time each tier reported in the <code>Diorama-Timing</code> response header (completed requests).</p>");
            h.push_str("<table><tr><th class=\"l\">tier</th><th>p50 (ms)</th><th>p99 (ms)</th><th>mean (ms)</th><th>samples</th></tr>");
            for (name, t) in tiers {
                let n = req.tiers.get(name).map_or(0, hdrhistogram::Histogram::len);
                let _ = write!(
                    h,
                    "<tr><td class=\"l\">{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{n}</td></tr>",
                    esc(name),
                    t.p50,
                    t.p99,
                    t.mean
                );
            }
            h.push_str("</table>");
            let series: Vec<Series> = req
                .tiers
                .iter()
                .map(|(name, hist)| Series { name: name.clone(), points: cdf_points(hist, 1e-3, 300) })
                .collect();
            h.push_str(&chart(
                "Per-tier time CDF",
                "time in tier (ms)",
                "fraction of requests",
                XAxis::Log10,
                &series,
                run,
                Some((0.0, 1.0)),
            )?);
        }
    }

    if let (Some(r), Some(data)) = (&s.replication, &run.replication) {
        replication_section(&mut h, r, data, run)?;
    }
    for b in &run.balancers {
        balancer_section(&mut h, b, run)?;
    }
    if let Some(p) = &s.probes {
        probes_section(&mut h, p);
    }

    if !s.faults.is_empty() {
        h.push_str("<h2>Faults</h2><table><tr><th class=\"l\">id</th><th class=\"l\">name</th><th class=\"l\">fault</th><th class=\"l\">targets</th><th>at (virtual s)</th><th>undone at</th></tr>");
        for f in &s.faults {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.3}</td><td>{}</td></tr>",
                esc(&f.id),
                esc(f.name.as_deref().unwrap_or("")),
                esc(&f.fault),
                esc(&f.targets.join(", ")),
                f.t_virtual_s,
                fix(f.undone_at_s, 3)
            );
        }
        h.push_str("</table>");
    }

    if !run.loadgens.is_empty() {
        h.push_str("<h2>Load generators</h2><p class=\"note\">Counts from each <code>requests.csv</code>, beside what the load generator's own <code>summary.json</code> says.</p>");
        h.push_str("<table><tr><th class=\"l\">node</th><th>requests</th><th>completed</th><th>errors</th><th>its summary: requests</th><th>throughput (rps)</th><th>p99 (ms)</th><th>behind</th><th>rate changes</th></tr>");
        for lg in &run.loadgens {
            let own = |k: &str| {
                lg.own_summary.as_ref().and_then(|v| v.get(k)).map_or_else(
                    || "–".to_owned(),
                    |v| match (v.as_u64(), v.as_f64()) {
                        (Some(n), _) => n.to_string(),
                        (None, Some(x)) => format!("{x:.1}"),
                        _ => esc(&v.to_string()),
                    },
                )
            };
            let p99 = lg
                .own_summary
                .as_ref()
                .and_then(|v| v.pointer("/latency_us/p99"))
                .and_then(Value::as_f64)
                .map(|us| us / 1e3);
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&lg.node),
                lg.stats.total,
                lg.stats.completed,
                lg.stats.errors,
                own("requests"),
                own("throughput_rps"),
                fix(p99, 3),
                own("behind"),
                own("rate_changes")
            );
        }
        h.push_str("</table>");
    }

    if !run.nodes.is_empty() {
        h.push_str("<h2>Nodes</h2><p class=\"note\">CPU is the share of the node's perceived machine (its <code>cpus</code> at full speed) in use over each sample interval; 100 % = all of it.</p>");
        let (names, note) = top(run.nodes.iter(), |n| n.cpu.iter().map(|p| p.1).sum::<f64>());
        let series: Vec<Series> = names
            .iter()
            .map(|n| Series {
                name: (*n).clone(),
                points: run.nodes[*n].cpu.iter().map(|p| (p.0, p.1 * 100.0)).collect(),
            })
            .collect();
        h.push_str(&chart(
            "CPU per node",
            "virtual time since the run's start (s)",
            "% of perceived machine",
            XAxis::Linear,
            &series,
            run,
            None,
        )?);
        h.push_str(&note);
        let (names, note) = top(run.nodes.iter(), |n| n.memory.iter().map(|p| p.1).fold(0.0, f64::max));
        let series: Vec<Series> = names
            .iter()
            .map(|n| Series {
                name: (*n).clone(),
                points: run.nodes[*n].memory.iter().map(|p| (p.0, p.1 / 1048576.0)).collect(),
            })
            .collect();
        h.push_str(&chart(
            "Memory per node",
            "virtual time since the run's start (s)",
            "MiB",
            XAxis::Linear,
            &series,
            run,
            None,
        )?);
        h.push_str(&note);
        h.push_str("<table><tr><th class=\"l\">node</th><th>CPU mean</th><th>CPU max</th><th>memory max (MiB)</th><th>throttled (ms)</th></tr>");
        for (name, n) in &s.nodes {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{:.1} %</td><td>{:.1} %</td><td>{:.1}</td><td>{:.1}</td></tr>",
                esc(name),
                n.cpu_perceived_mean * 100.0,
                n.cpu_perceived_max * 100.0,
                n.memory_max_bytes as f64 / 1048576.0,
                n.throttled_ms
            );
        }
        h.push_str("</table>");
    }

    if !run.links.is_empty() {
        h.push_str("<h2>Links</h2><p class=\"note\">Utilization is the share of the link direction's perceived rate in use over each sample interval.</p>");
        let (names, note) = top(run.links.iter(), |l| l.utilization.iter().map(|p| p.1).sum::<f64>());
        let series: Vec<Series> = names
            .iter()
            .map(|n| Series {
                name: (*n).clone(),
                points: run.links[*n].utilization.iter().map(|p| (p.0, p.1 * 100.0)).collect(),
            })
            .collect();
        h.push_str(&chart(
            "Link utilization",
            "virtual time since the run's start (s)",
            "% of link rate",
            XAxis::Linear,
            &series,
            run,
            None,
        )?);
        h.push_str(&note);
        h.push_str("<table><tr><th class=\"l\">link/direction</th><th>utilization mean</th><th>max</th><th>bytes</th><th>drops</th></tr>");
        for (name, l) in &s.links {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td>{:.2} %</td><td>{:.2} %</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                l.utilization_mean * 100.0,
                l.utilization_max * 100.0,
                l.bytes,
                l.drops
            );
        }
        h.push_str("</table>");
    }

    let _ = writeln!(
        h,
        "<p class=\"note\">Written by diorama {} (summary schema {}). Times are virtual: what the nodes' dilated clocks read.</p></body></html>",
        esc(env!("CARGO_PKG_VERSION")),
        super::summary::SCHEMA
    );
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(esc(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}

/// The model λReplica's planner used last in each region: each term configured or fitted to
/// the samples the instances measured (docs/replica.md, "measured model").
fn planner_models(h: &mut String, models: &std::collections::BTreeMap<String, crate::replication::PlannerModel>) {
    if models.is_empty() {
        return;
    }
    h.push_str("<p class=\"note\">The planner's model at the end, per region: I invocation latency, D ready delay, S transfer setup, C time per chunk; configured, or fitted to the samples the instances measured (in the window / in all).</p>");
    h.push_str("<table><tr><th class=\"l\">region</th><th class=\"l\">term</th><th class=\"l\">source</th><th class=\"l\">distribution</th><th>mean (s)</th><th>samples</th></tr>");
    for (region, m) in models {
        for (name, t) in [("I", &m.invoke), ("D", &m.ready), ("S", &m.setup), ("C", &m.per_chunk)] {
            // `{"kind":"lognormal","mu":…,"sigma":…}` as `lognormal mu=… sigma=…`.
            let params = t.dist.as_object().map_or_else(String::new, |o| {
                o.iter()
                    .filter(|(k, _)| *k != "kind")
                    .map(|(k, v)| format!("{k}={}", v.as_f64().map_or_else(|| v.to_string(), plot::num)))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            let kind = t.dist.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{name}</td><td class=\"l\">{}</td><td class=\"l\">{} {}</td><td>{}</td><td>{} / {}</td></tr>",
                esc(region),
                esc(&t.source),
                esc(kind),
                esc(&params),
                plot::num(t.mean_s),
                t.samples,
                t.total
            );
        }
    }
    h.push_str("</table>");
}

/// The replication section (docs/replica.md): copies, delays in virtual seconds by size
/// class with the plans chosen and the cost per object, per system; SLO attainment and
/// violations, reconciliation repairs, the bill and the end check's verdict.
fn replication_section(
    h: &mut String,
    r: &crate::replication::ReplicationSummary,
    data: &crate::replication::ReplicationData,
    run: &RunData,
) -> Result<(), ReportError> {
    h.push_str("<h2>Replication</h2><p class=\"note\">Delay: from a write at the source (its event) to the release of the copy that brought the destination to it, in virtual seconds; one sample per write.</p>");
    let pct = |a: Option<f64>| a.map_or("–".to_owned(), |a| format!("{:.2} %", a * 100.0));
    let usd = |a: Option<f64>| a.map_or("–".to_owned(), |a| format!("{a:.6}"));
    let verified = r.verified.as_ref().map_or("– (no verdict.json)".to_owned(), |v| {
        format!("{} of {} ({} mismatched)", v.equal, v.source_objects, v.mismatched)
    });
    let _ = write!(
        h,
        "<table><tr><th class=\"l\">objects replicated</th><td>{}</td></tr><tr><th class=\"l\">of which deletes</th><td>{}</td></tr>\
         <tr><th class=\"l\">bytes replicated</th><td>{}</td></tr><tr><th class=\"l\">bytes across the WAN</th><td>{}</td></tr>\
         <tr><th class=\"l\">writes coalesced into another's copy</th><td>{}</td></tr>\
         <tr><th class=\"l\">SLO attainment (writes)</th><td>{}</td></tr>\
         <tr><th class=\"l\">SLO violations</th><td>{}</td></tr><tr><th class=\"l\">objects verified equal</th><td>{}</td></tr></table>",
        r.all.objects_replicated,
        r.all.deletes,
        r.all.bytes,
        r.all.wan_bytes,
        r.all.writes_coalesced,
        pct(r.all.slo_attainment),
        r.slo_violations,
        esc(&verified)
    );
    if let Some(v) = r.verified.as_ref().filter(|v| !v.examples.is_empty()) {
        h.push_str("<p class=\"note\">Mismatched: ");
        h.push_str(&esc(&v.examples.join("; ")));
        h.push_str("</p>");
    }
    h.push_str("<table><tr><th class=\"l\">system</th><th class=\"l\">size class</th><th>copies</th><th>writes</th><th>p50</th><th>p99</th><th>p99.99</th><th>max</th><th class=\"l\">plan region</th><th class=\"l\">plan n</th><th>$ per object</th></tr>");
    let join = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
    };
    type Row<'a> = (&'a str, usize, Option<&'a crate::replication::Delay>, String, String, Option<f64>);
    let row = |h: &mut String, system: &str, (class, objects, d, regions, n, cost): Row<'_>| {
        let cell = |v: Option<f64>| v.map_or("–".to_owned(), plot::num);
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{objects}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
            esc(system),
            esc(class),
            d.map_or(0, |d| d.count),
            cell(d.map(|d| d.p50)),
            cell(d.map(|d| d.p99)),
            cell(d.map(|d| d.p9999)),
            cell(d.map(|d| d.max)),
            esc(&regions),
            esc(&n),
            usd(cost)
        );
    };
    for (system, f) in &r.by_system {
        for c in &f.size_classes {
            let cells = (
                c.class.as_str(),
                c.objects,
                c.delay_s.as_ref(),
                join(&c.regions),
                join(&c.instances),
                c.cost_per_object_usd,
            );
            row(h, system, cells);
        }
        let all = (
            "all",
            f.objects_replicated - f.deletes,
            f.delay_s.as_ref(),
            String::new(),
            String::new(),
            f.cost_per_object_usd,
        );
        row(h, system, all);
    }
    h.push_str("</table>");
    let mut series = Vec::new();
    for system in r.by_system.keys() {
        let mut delays: Vec<f64> =
            data.copies.iter().filter(|c| &c.system == system).flat_map(|c| c.delays.iter().copied()).collect();
        if delays.len() > 1 {
            delays.sort_by(f64::total_cmp);
            let n = delays.len() as f64;
            let points: Vec<(f64, f64)> = delays.iter().enumerate().map(|(i, d)| (*d, (i + 1) as f64 / n)).collect();
            series.push(Series { name: format!("{system}: replication delay"), points });
        }
    }
    if !series.is_empty() {
        h.push_str(&chart(
            "Replication delay CDF",
            "delay (virtual s)",
            "fraction of writes",
            XAxis::Linear,
            &series,
            run,
            Some((0.0, 1.0)),
        )?);
    }
    h.push_str("<table><tr><th class=\"l\">cost</th><th>invocations</th><th>failed</th><th>dead letters</th><th>GB-s</th><th>S3 requests</th><th>egress bytes</th><th>functions ($)</th><th>fees ($)</th><th>machines ($)</th><th>total ($)</th><th class=\"l\">made by</th></tr>");
    for (system, f) in &r.by_system {
        let c = &f.cost;
        let _ = write!(
            h,
            "<tr><th class=\"l\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.6}</td><td>{:.6}</td><td>{:.6}</td><td>{:.6}</td><td class=\"l\">{}</td></tr>",
            esc(system),
            c.invocations,
            c.failed,
            c.dead_letters,
            plot::num(c.gb_seconds),
            c.requests,
            c.egress_bytes,
            c.functions_usd,
            c.fees_usd,
            c.machines_usd,
            c.total_usd,
            esc(&join(&f.via))
        );
    }
    h.push_str("</table>");
    planner_models(h, &r.planner);
    if !r.repairs.is_empty() {
        h.push_str("<table><tr><th class=\"l\">reconciliation repaired</th><th>keys</th></tr>");
        for (kind, n) in &r.repairs {
            let _ = write!(h, "<tr><td class=\"l\">{}</td><td>{n}</td></tr>", esc(kind));
        }
        h.push_str("</table>");
    }
    if !r.violations.is_empty() {
        h.push_str("<table><tr><th class=\"l\">violation</th><th class=\"l\">system</th><th class=\"l\">key</th><th class=\"l\">reason</th></tr>");
        for v in &r.violations {
            let _ = write!(
                h,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(&v.cause),
                esc(&v.system),
                esc(&v.key),
                esc(&v.reason)
            );
        }
        h.push_str("</table>");
        if r.slo_violations > r.violations.len() {
            let _ = write!(h, "<p class=\"note\">{} more not listed.</p>", r.slo_violations - r.violations.len());
        }
    }
    Ok(())
}

/// RTT matrices are drawn up to this many locations and endpoints; the table lists all.
const MAX_MATRIX: usize = 40;

/// `<tr>` of header cells, the first left-aligned.
fn header_row(h: &mut String, cells: &[&str]) {
    h.push_str("<tr>");
    for (i, c) in cells.iter().enumerate() {
        let _ = write!(h, "<th{}>{}</th>", if i == 0 { " class=\"l\"" } else { "" }, esc(c));
    }
    h.push_str("</tr>");
}

/// `<tr>` of `left` (left-aligned, escaped) and then number cells (already text).
fn data_row(h: &mut String, left: &[&str], numbers: &[String]) {
    h.push_str("<tr>");
    for c in left {
        let _ = write!(h, "<td class=\"l\">{}</td>", esc(c));
    }
    for c in numbers {
        let _ = write!(h, "<td>{c}</td>");
    }
    h.push_str("</tr>");
}

/// The probes section (docs/probes.md): per probe server, its runs (and those missed),
/// its API's rate and latency, the RTT from every location (region or agent) to every
/// endpoint, the time per agent kind and each task's runs; then the agents' cost by kind.
fn probes_section(h: &mut String, p: &crate::probes::ProbeSummary) {
    use crate::probes::Dist;
    let ms = |v: f64| fix(Some(v), 3);
    let dist = |d: Option<&Dist>, f: fn(&Dist) -> f64| fix(d.map(f), 3);
    for (node, s) in &p.servers {
        let _ = write!(
            h,
            "<h2>Probes: server {}</h2><p class=\"note\">From <code>nodes/{}/probe-results.json</code>, written when the server stopped{}. \
             Times are virtual. A run is <i>missed</i> when no agent took it or its agent delivered nothing within the lease, \
             or when the scheduler skipped its firing (catch-up policy).</p>",
            esc(node),
            esc(node),
            s.exported_at.as_deref().map(|t| format!(" ({})", esc(t))).unwrap_or_default()
        );
        let r = &s.runs;
        h.push_str("<table>");
        header_row(
            h,
            &[
                "runs",
                "issued",
                "measured",
                "failed",
                "missed",
                "of which lease failures",
                "skipped firings",
                "in flight at the end",
            ],
        );
        data_row(
            h,
            &["all tasks"],
            &[r.issued, r.ok, r.failed, r.missed, r.lease_failures, r.skipped_firings, r.in_flight]
                .map(|n| n.to_string()),
        );
        h.push_str("</table><table>");
        header_row(h, &["start lag (ms)", "runs", "p50", "p99", "max"]);
        let w = s.wait_ms.as_ref();
        data_row(
            h,
            &["firing → taken by an agent"],
            &[w.map_or(0, |d| d.count).to_string(), dist(w, |d| d.p50), dist(w, |d| d.p99), dist(w, |d| d.max)],
        );
        h.push_str("</table>");
        if let Some(api) = &s.api {
            let l = &api.latency_us;
            h.push_str("<table>");
            header_row(
                h,
                &["API", "requests", "per virtual s", "latency p50 (µs)", "p99 (µs)", "max (µs)", "timed requests"],
            );
            data_row(
                h,
                &["whole uptime"],
                &[
                    api.requests.to_string(),
                    format!("{:.1}", api.request_rate_per_s),
                    l.p50.to_string(),
                    l.p99.to_string(),
                    l.max.to_string(),
                    l.count.to_string(),
                ],
            );
            h.push_str("</table><p class=\"note\">Latency leaves out agents' long polls, which wait on purpose.</p>");
        }

        let mut measurements: Vec<&str> = s.rtt.iter().map(|c| c.measurement.as_str()).collect();
        measurements.sort_unstable();
        measurements.dedup();
        for m in measurements {
            let cells: Vec<&crate::probes::RttRow> = s.rtt.iter().filter(|c| c.measurement == m).collect();
            let mut locations: Vec<&str> = cells.iter().map(|c| c.location.as_str()).collect();
            let mut endpoints: Vec<&str> = cells.iter().map(|c| c.endpoint.as_str()).collect();
            locations.dedup();
            endpoints.sort_unstable();
            endpoints.dedup();
            if locations.len() > MAX_MATRIX || endpoints.len() > MAX_MATRIX {
                continue;
            }
            let what = if m == "http" { "HTTP connect (one round trip)" } else { m };
            let _ = write!(
                h,
                "<p><b>Median RTT (ms), {}</b>: from each location (rows) to each endpoint (columns)</p><table>",
                esc(what)
            );
            let mut head = vec!["from \\ to"];
            head.extend(&endpoints);
            header_row(h, &head);
            for l in &locations {
                let medians: Vec<String> = endpoints
                    .iter()
                    .map(|e| {
                        let cell = cells.iter().find(|c| c.location == *l && c.endpoint == *e);
                        dist(cell.and_then(|c| c.rtt_ms.as_ref()), |d| d.p50)
                    })
                    .collect();
                data_row(h, &[l], &medians);
            }
            h.push_str("</table>");
        }
        if !s.rtt.is_empty() {
            h.push_str("<table>");
            header_row(
                h,
                &[
                    "from",
                    "to",
                    "measurement",
                    "samples",
                    "min (ms)",
                    "p50",
                    "p90",
                    "p99",
                    "max",
                    "mean",
                    "measured",
                    "failed",
                ],
            );
            for c in &s.rtt {
                let d = c.rtt_ms.as_ref();
                data_row(
                    h,
                    &[&c.location, &c.endpoint, &c.measurement],
                    &[
                        d.map_or(0, |d| d.count).to_string(),
                        dist(d, |d| d.min),
                        dist(d, |d| d.p50),
                        dist(d, |d| d.p90),
                        dist(d, |d| d.p99),
                        dist(d, |d| d.max),
                        dist(d, |d| d.mean),
                        c.measured.to_string(),
                        c.failed.to_string(),
                    ],
                );
            }
            h.push_str("</table><p class=\"note\">Samples: every ping reply, or one TCP connect per HTTP measurement. Percentiles are nearest-rank.</p>");
        }
        if !s.kinds.is_empty() {
            h.push_str("<table>");
            header_row(
                h,
                &[
                    "agent kind",
                    "runs",
                    "wait (mean ms)",
                    "start-up",
                    "execution",
                    "teardown",
                    "response mean",
                    "p50",
                    "p99",
                ],
            );
            for k in &s.kinds {
                let d = k.response_ms.as_ref();
                data_row(
                    h,
                    &[&k.kind],
                    &[
                        k.runs.to_string(),
                        ms(k.wait_ms_mean),
                        ms(k.startup_ms_mean),
                        ms(k.exec_ms_mean),
                        ms(k.teardown_ms_mean),
                        dist(d, |d| d.mean),
                        dist(d, |d| d.p50),
                        dist(d, |d| d.p99),
                    ],
                );
            }
            h.push_str("</table><p class=\"note\">Response: from the firing until the server stored the result.</p>");
        }
        h.push_str("<table>");
        header_row(
            h,
            &[
                "task",
                "type",
                "state",
                "measurement",
                "locations",
                "firings",
                "skipped firings",
                "runs issued",
                "measured",
                "failed",
                "lease failures",
                "in flight",
                "missed",
            ],
        );
        for t in &s.tasks {
            let r = &t.runs;
            data_row(
                h,
                &[&t.id.to_string(), &t.kind, &t.state, &t.measurement],
                &[
                    t.locations.to_string(),
                    t.firings.to_string(),
                    r.skipped_firings.to_string(),
                    r.issued.to_string(),
                    r.ok.to_string(),
                    r.failed.to_string(),
                    r.lease_failures.to_string(),
                    r.in_flight.to_string(),
                    r.missed.to_string(),
                ],
            );
        }
        h.push_str("</table>");
    }
    if !p.agents.is_empty() {
        h.push_str("<h2>Probe agents</h2><p class=\"note\">From every <code>nodes/&lt;agent&gt;/agent-summary.json</code>: always-on agents are billed by the hour of uptime, on-demand ones per invocation and second of invocation time.</p><table>");
        header_row(
            h,
            &["kind", "agents", "runs", "measurements", "delivery retries", "cost ($)", "per 1,000 measurements ($)"],
        );
        for (kind, c) in &p.agents {
            data_row(
                h,
                &[kind],
                &[
                    c.agents.to_string(),
                    c.runs.to_string(),
                    c.measurements.to_string(),
                    c.delivery_retries.to_string(),
                    format!("{:.6}", c.cost),
                    format!("{:.6}", c.cost_per_1000_measurements),
                ],
            );
        }
        h.push_str("</table>");
    }
}

/// `trap: etcd1, etcd2; shim: client`: the nodes of each mechanism.
fn dilation_line(mechanisms: &[(String, String)]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (node, m) in mechanisms {
        match groups.iter_mut().find(|g| g.0 == m) {
            Some(g) => g.1.push(node),
            None => groups.push((m, vec![node])),
        }
    }
    groups.iter().map(|(m, nodes)| format!("{m}: {}", nodes.join(", "))).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod dilation_tests {
    #[test]
    fn the_dilation_line_groups_nodes_by_mechanism() {
        let m = |n: &str, k: &str| (n.to_owned(), k.to_owned());
        let line = super::dilation_line(&[m("e1", "trap"), m("c", "shim"), m("e2", "trap")]);
        assert_eq!(line, "trap: e1, e2; shim: c");
    }
}
