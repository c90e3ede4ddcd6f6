//! CSV reading shared by the report's inputs: header checks and errors that name the file,
//! the line and the field.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::ReportError;

/// Opens `path` as a CSV reader whose header must hold every `required` column.
/// `Ok(None)` when the file does not exist.
/// An open CSV file and its header.
pub(crate) type Opened = (csv::Reader<BufReader<File>>, csv::StringRecord);

pub(crate) fn open(path: &Path, required: &[&str]) -> Result<Option<Opened>, ReportError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReportError::Read { path: path.to_owned(), source }),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let headers = reader.headers().map_err(|e| error(path, None, e))?.clone();
    if headers.is_empty() {
        return Ok(Some((reader, headers)));
    }
    for column in required {
        if !headers.iter().any(|h| h == *column) {
            return Err(ReportError::Csv {
                path: path.to_owned(),
                line: 1,
                field: (*column).to_owned(),
                message: format!("missing column (header is `{}`)", headers.iter().collect::<Vec<_>>().join(",")),
            });
        }
    }
    Ok(Some((reader, headers)))
}

/// Reads every row of `path` as `T`, calling `each`. `Ok(false)` when the file is missing.
pub(crate) fn for_each<T: DeserializeOwned>(
    path: &Path,
    required: &[&str],
    mut each: impl FnMut(T),
) -> Result<bool, ReportError> {
    let Some((mut reader, headers)) = open(path, required)? else { return Ok(false) };
    if headers.is_empty() {
        return Ok(true);
    }
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(error(path, Some(&headers), e)),
        }
        let row =
            record.deserialize::<T>(Some(&headers)).map_err(|e| deserialize_error(path, &headers, &record, &e))?;
        each(row);
    }
    Ok(true)
}

/// A csv error as a [`ReportError`] naming the line and, when known, the field.
pub(crate) fn error(path: &Path, headers: Option<&csv::StringRecord>, err: csv::Error) -> ReportError {
    let line = err.position().map_or(0, csv::Position::line);
    let (field, message) = match err.kind() {
        csv::ErrorKind::Deserialize { err: de, .. } => (
            de.field().and_then(|i| headers.and_then(|h| h.get(usize::try_from(i).ok()?))).unwrap_or("?").to_owned(),
            de.kind().to_string(),
        ),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            (String::from("(row)"), format!("{len} fields where the header has {expected_len}"))
        }
        _ => (String::from("(row)"), err.to_string()),
    };
    ReportError::Csv { path: path.to_owned(), line, field, message }
}

/// A row that did not deserialize, naming its line and field.
pub(crate) fn deserialize_error(
    path: &Path,
    headers: &csv::StringRecord,
    record: &csv::StringRecord,
    err: &csv::Error,
) -> ReportError {
    let line = record.position().map_or(0, csv::Position::line);
    let csv::ErrorKind::Deserialize { err: de, .. } = err.kind() else {
        return ReportError::Csv { path: path.to_owned(), line, field: "(row)".into(), message: err.to_string() };
    };
    let field = de.field().and_then(|i| headers.get(usize::try_from(i).ok()?)).unwrap_or("?").to_owned();
    let value = de.field().and_then(|i| record.get(usize::try_from(i).ok()?)).unwrap_or("");
    ReportError::Csv { path: path.to_owned(), line, field, message: format!("{} (value {value:?})", de.kind()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Row {
        #[expect(dead_code, reason = "read to check its type only")]
        a: u32,
        b: f64,
    }

    #[test]
    fn a_bad_value_names_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a,b\n1,2.0\n2,oops\n").unwrap();
        let err = for_each::<Row>(&path, &["a", "b"], |_| {}).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("x.csv:3: field `b`"), "{text}");
        assert!(text.contains("oops"), "{text}");
    }

    #[test]
    fn a_missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a\n1\n").unwrap();
        let err = for_each::<Row>(&path, &["a", "b"], |_| {}).unwrap_err();
        assert!(err.to_string().contains("x.csv:1: field `b`: missing column"), "{err}");
    }

    #[test]
    fn missing_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!for_each::<Row>(&dir.path().join("none.csv"), &[], |_| {}).unwrap());
        let path = dir.path().join("empty.csv");
        std::fs::write(&path, "").unwrap();
        let mut n = 0;
        assert!(for_each::<Row>(&path, &["a"], |_| n += 1).unwrap());
        assert_eq!(n, 0);
        std::fs::write(&path, "a,b\n1,0.5\n").unwrap();
        let mut sum = 0.0;
        for_each::<Row>(&path, &["a"], |r| sum += r.b).unwrap();
        assert!((sum - 0.5).abs() < 1e-12);
    }
}
