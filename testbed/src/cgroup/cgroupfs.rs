//! cgroupfs files: a write that names its path and value in the error, a number, one key of
//! a flat-keyed file (`cpu.stat`, `cgroup.events`), a list of ids.

use std::path::Path;

use super::ResourceError;

pub(super) fn write(path: &Path, value: &str) -> Result<(), ResourceError> {
    std::fs::write(path, value).map_err(|source| ResourceError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

pub(super) fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(super) fn stat_field(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The ids listed one per line in `path` (`cgroup.procs`, `tasks`, `cgroup.threads`).
pub(super) fn ids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path).map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect()).unwrap_or_default()
}
