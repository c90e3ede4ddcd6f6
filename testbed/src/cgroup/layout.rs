//! Which cgroup hierarchies this host mounts: one per v1 controller, or the v2 unified one.

use std::path::{Path, PathBuf};

use super::ResourceError;

/// cgroup v1 controllers a node uses, each its own hierarchy.
const V1_CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "blkio", "freezer"];

#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// Controller name → its hierarchy's mount point.
    V1(Vec<(String, PathBuf)>),
    V2(PathBuf),
}

pub fn detect() -> Result<Layout, ResourceError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| ResourceError::Detect(e.to_string()))?;
    detect_from(&mounts, Path::new("/"))
}

/// The layout described by a mount table (`/proc/self/mounts` format), with mount points
/// taken relative to `root` (tests pass a tempdir laid out like cgroupfs).
pub fn detect_from(mounts: &str, root: &Path) -> Result<Layout, ResourceError> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        match f[2] {
            "cgroup" => {
                for opt in f[3].split(',') {
                    if V1_CONTROLLERS.contains(&opt) && !v1.iter().any(|(c, _): &(String, PathBuf)| c == opt) {
                        v1.push((opt.to_owned(), at(f[1])));
                    }
                }
            }
            "cgroup2" => {
                let path = at(f[1]);
                let controllers = std::fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "cpu") {
                    v2 = Some(path);
                }
            }
            _ => {}
        }
    }
    if let Some(root) = v2 {
        return Ok(Layout::V2(root));
    }
    if v1.iter().any(|(c, _)| c == "cpu") {
        return Ok(Layout::V1(v1));
    }
    Err(ResourceError::Detect("no cgroup v1 cpu hierarchy and no cgroup v2 hierarchy with the cpu controller".into()))
}
