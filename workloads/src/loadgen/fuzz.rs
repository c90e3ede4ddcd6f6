//! Fuzz target of the trace readers (see the `fuzzing` crate): any text parses to events or
//! to an error naming a line, never a panic; whatever parses survives a round trip through
//! every written form. Corpus: `workloads/fuzz/trace/`.

use std::path::Path;

use super::trace::{parse, render, speed, Format};

#[test]
fn fuzz_trace() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/trace");
    fuzzing::run("trace", &dir, |input| {
        let text = fuzzing::text(input);
        for csv in [false, true] {
            match parse(&text, csv) {
                Ok(events) => {
                    for format in [Format::Json, Format::Jsonl, Format::Csv] {
                        let again = parse(&render(&events, format), format == Format::Csv);
                        assert_eq!(again.as_ref().ok(), Some(&events), "{format:?} round trip: {again:?}");
                    }
                    let _ = speed(&events, 2.0);
                }
                Err((line, _, _)) => {
                    assert!(line >= 1 && line <= text.lines().count().max(1) as u64 + 1, "line {line}")
                }
            }
        }
    });
}
