//! Finding a node's program the way `execvp` would, so that the harness refuses a missing
//! program before it creates anything, and the node runs exactly what was checked.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Default search path when the environment has none (as in `execvp`).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The file `program` names: itself when it contains a `/`, else the first regular file of
/// that name in the directories of `path` (default [`DEFAULT_PATH`]).
pub fn find_program(program: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.components().count() > 1 || program.to_string_lossy().contains('/') {
        return p.is_file().then(|| p.to_owned());
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path).map(|d| d.join(p)).find(|c| c.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_on_the_given_path_and_checks_explicit_paths() {
        let found = find_program(OsStr::new("sh"), Some(OsStr::new("/nonexistent:/bin:/usr/bin"))).unwrap();
        assert!(found.is_absolute() && found.ends_with("sh"), "{found:?}");
        assert_eq!(find_program(OsStr::new("sh"), Some(OsStr::new("/nonexistent"))), None);
        assert_eq!(find_program(OsStr::new("/bin/sh"), None), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_program(OsStr::new("./no-such-program"), None), None);
    }
}
