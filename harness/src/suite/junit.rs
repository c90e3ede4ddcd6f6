//! JUnit XML of a suite's results (the format CI systems read): one `<testsuite>` per
//! scenario, one `<testcase>` per assertion plus one for the run itself. A failed
//! assertion is a `<failure>` whose message holds the measured and the expected value;
//! one that could not be evaluated (or a scenario that could not run) is an `<error>`.

use std::fmt::Write as _;

use super::assess::Status;
use super::outcome::{ScenarioResult, SuiteResult};

/// Escapes text for XML attributes and character data: the HTML escape (whose `&#39;` is
/// XML too), minus the control characters XML 1.0 forbids even escaped.
fn esc(s: &str) -> String {
    let clean: String =
        s.chars().map(|c| if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') { ' ' } else { c }).collect();
    report::html::esc(&clean)
}

fn scenario_xml(out: &mut String, suite: &str, s: &ScenarioResult) {
    let tests = s.verdicts.len() + 1;
    let failures = s.verdicts.iter().filter(|v| v.status == Status::Fail).count() + usize::from(s.run_failed());
    let errors = s.verdicts.iter().filter(|v| v.status == Status::Error).count() + usize::from(s.error.is_some());
    let _ = writeln!(
        out,
        r#"  <testsuite name="{}" tests="{tests}" failures="{failures}" errors="{errors}" time="{:.3}">"#,
        esc(&format!("{suite}.{}", s.name)),
        s.real_s
    );
    let _ = writeln!(
        out,
        r#"    <properties><property name="results" value="{}"/><property name="tdf" value="{}"/></properties>"#,
        esc(&s.results_dir.display().to_string()),
        s.tdf.map_or_else(String::new, |t| t.to_string())
    );
    let class = esc(&format!("{suite}.{}", s.name));
    let _ = write!(out, r#"    <testcase classname="{class}" name="run" time="{:.3}">"#, s.real_s);
    if let Some(e) = &s.error {
        let _ = write!(out, r#"<error message="{}">{}</error>"#, esc(e), esc(e));
    } else if s.run_failed() {
        let m = format!("the run failed: {}", s.reason);
        let _ = write!(out, r#"<failure message="{}">{}</failure>"#, esc(&m), esc(&m));
    }
    out.push_str("</testcase>\n");
    for v in &s.verdicts {
        let _ = write!(out, r#"    <testcase classname="{class}" name="{}" time="0">"#, esc(&v.text));
        let body = format!(
            "{}\nmeasured: {}\nexpected: {}\nat {} (line {})\n{}",
            v.text, v.measured, v.expected, v.field, v.line, v.detail
        );
        match v.status {
            Status::Pass => {}
            Status::Fail => {
                let _ = write!(
                    out,
                    r#"<failure message="{}" type="assertion">{}</failure>"#,
                    esc(&v.message()),
                    esc(&body)
                );
            }
            Status::Error => {
                let _ = write!(
                    out,
                    r#"<error message="{}" type="not_evaluated">{}</error>"#,
                    esc(&v.message()),
                    esc(&body)
                );
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n");
}

/// The JUnit XML document of a suite run.
pub fn render(result: &SuiteResult) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let tests: usize = result.scenarios.iter().map(|s| s.verdicts.len() + 1).sum();
    let _ = writeln!(
        out,
        r#"<testsuites name="{}" tests="{tests}" failures="{}" errors="{}" time="{:.3}">"#,
        esc(&result.name),
        result.failed,
        result.errors,
        result.real_s
    );
    for s in &result.scenarios {
        scenario_xml(&mut out, &result.name, s);
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::assess::Verdict;

    #[test]
    fn failures_carry_measured_and_expected_values() {
        let v = |status, text: &str| Verdict {
            text: text.into(),
            field: "scenarios[0].assert[0]".into(),
            line: 7,
            status,
            expected: "< 250.000 ms".into(),
            measured: "312.400 ms".into(),
            detail: String::new(),
        };
        let result = SuiteResult::from_scenarios(
            "nightly",
            std::path::Path::new("s.yaml"),
            vec![ScenarioResult {
                name: "steady".into(),
                results_dir: "/tmp/x".into(),
                tdf: Some(10.0),
                success: Some(true),
                reason: "duration".into(),
                real_s: 1.5,
                error: None,
                verdicts: vec![
                    v(Status::Pass, "p50 < 10ms"),
                    v(Status::Fail, "p99 < 250ms & <x>"),
                    v(Status::Error, "fidelity: ok"),
                ],
            }],
            2.0,
        );
        let xml = render(&result);
        assert!(xml.contains(r#"<testsuites name="nightly" tests="4" failures="1" errors="1""#), "{xml}");
        assert!(xml.contains(r#"<failure message="p99 &lt; 250ms &amp; &lt;x&gt;: measured 312.400 ms, expected &lt; 250.000 ms" type="assertion">"#), "{xml}");
        assert!(xml.contains("<error message=\"fidelity: ok: measured"), "{xml}");
        assert!(
            xml.contains(r#"<testcase classname="nightly.steady" name="p50 &lt; 10ms" time="0"></testcase>"#),
            "{xml}"
        );
        assert_eq!(xml.matches("<testcase ").count(), 4);
    }
}
