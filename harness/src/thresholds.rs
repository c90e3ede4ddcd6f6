//! Comparison thresholds files (`--thresholds`, a suite's `compare_to`): YAML whose errors
//! name the file, the line and the field. Absent fields keep the defaults of
//! [`report::compare::Thresholds`].

use std::path::{Path, PathBuf};

use catalog::source::SourceMap;
use report::compare::Thresholds;

/// A thresholds file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdsError {
    #[error("read {}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("load thresholds: {}:{line}:{col}: {field}: {message}", file.display())]
    Invalid { file: PathBuf, line: usize, col: usize, field: String, message: String },
}

/// Reads a thresholds file.
pub fn load(file: &Path) -> Result<Thresholds, ThresholdsError> {
    let text =
        std::fs::read_to_string(file).map_err(|source| ThresholdsError::Read { file: file.to_owned(), source })?;
    from_yaml(file, &text)
}

/// Parses thresholds from YAML text; `file` names it in errors. Missing fields keep
/// their defaults; an empty document is all defaults.
pub fn from_yaml(file: &Path, text: &str) -> Result<Thresholds, ThresholdsError> {
    let invalid = |pos: catalog::source::Pos, field: &str, message: String| ThresholdsError::Invalid {
        file: file.to_owned(),
        line: pos.line,
        col: pos.col,
        field: if field.is_empty() { "(document)".to_owned() } else { field.to_owned() },
        message,
    };
    let source = SourceMap::build(text).map_err(|e| invalid(e.pos, "", format!("malformed YAML: {}", e.message)))?;
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let pos = e.location().map_or(catalog::source::Pos { line: 1, col: 1 }, |l| catalog::source::Pos {
            line: l.line(),
            col: l.column(),
        });
        invalid(pos, "", format!("malformed YAML: {e}"))
    })?;
    if value.is_null() {
        return Ok(Thresholds::default());
    }
    let th: Thresholds = serde_path_to_error::deserialize(value).map_err(|err| {
        let field = err.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let message = err.into_inner().to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        invalid(source.locate(&field), &field, message)
    })?;
    for (field, v) in [
        ("distance", th.distance),
        ("shift", th.shift),
        ("shift_floor_ms", th.shift_floor_ms),
        ("ks", th.ks),
        ("p50", th.p50),
        ("p90", th.p90),
        ("p99", th.p99),
        ("mean", th.mean),
        ("throughput", th.throughput),
        ("cpu", th.cpu),
        ("link_util", th.link_util),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(invalid(source.locate_value(field), field, format!("must be a number ≥ 0, got {v}")));
        }
    }
    for (field, v) in [("ks", th.ks), ("distance", th.distance)] {
        if v > 1.0 {
            return Err(invalid(source.locate_value(field), field, format!("a KS distance is at most 1, got {v}")));
        }
    }
    Ok(th)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Thresholds, ThresholdsError> {
        from_yaml(Path::new("th.yaml"), text)
    }

    #[test]
    fn defaults_fill_what_is_missing() {
        assert_eq!(parse("").unwrap(), Thresholds::default());
        let th = parse("# strict tail\np99: 0.02\nks: 0.05\n").unwrap();
        assert_eq!((th.p99, th.ks, th.p50), (0.02, 0.05, 0.05));
    }

    #[test]
    fn a_bad_type_names_file_line_and_field() {
        let err = parse("ks: 0.1\np99: lots\n").unwrap_err().to_string();
        assert!(err.contains("th.yaml:2:"), "{err}");
        assert!(err.contains("p99:"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn an_unknown_field_is_refused_at_its_line() {
        let err = parse("ks: 0.1\n\np999: 0.2\n").unwrap_err().to_string();
        assert!(err.contains("th.yaml:3:1: p999: unknown field `p999`"), "{err}");
    }

    #[test]
    fn negative_and_out_of_range_values() {
        let err = parse("p50: 0.1\ncpu: -1\n").unwrap_err().to_string();
        assert!(err.contains("th.yaml:2:6: cpu: must be a number ≥ 0"), "{err}");
        let err = parse("ks: 2\n").unwrap_err().to_string();
        assert!(err.contains("th.yaml:1:5: ks: a KS distance is at most 1"), "{err}");
    }

    #[test]
    fn malformed_yaml_has_a_position() {
        let err = parse("ks: [0.1\n").unwrap_err().to_string();
        assert!(err.contains("th.yaml:") && err.contains("malformed YAML"), "{err}");
    }
}
