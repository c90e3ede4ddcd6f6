//! Checks that the shim can work on a process: is it loaded, can it be loaded at all.

use std::path::PathBuf;

pub use dilation_abi::exe::SHIM_NAME;

/// Whether process `pid` has the shim mapped (`/proc/PID/maps`).
pub fn shim_loaded(pid: u32) -> std::io::Result<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(maps_have_shim(&maps))
}

fn maps_have_shim(maps: &str) -> bool {
    maps.lines().any(|l| l.split_whitespace().nth(5).is_some_and(|p| p.ends_with(SHIM_NAME)))
}

/// Where the shim is: `$DIORAMA_SHIM`, else beside the current executable (cargo puts
/// `diorama` and `libdilation.so` in one directory), else one directory up (test binaries
/// live in `target/<profile>/deps/`).
pub fn locate_shim() -> Option<PathBuf> {
    locate("DIORAMA_SHIM", SHIM_NAME)
}

/// Where the trap launcher is: `$DIORAMA_TRAP`, else found as [`locate_shim`] finds the shim.
pub fn locate_trap() -> Option<PathBuf> {
    locate("DIORAMA_TRAP", crate::coverage::TRAP_NAME)
}

fn locate(variable: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(variable) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.parent()?.join(name)].into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_matched_on_the_path_column() {
        let maps = "7f00-7f01 r-xp 00000000 08:01 1234 /work/target/release/libdilation.so\n";
        assert!(maps_have_shim(maps));
        assert!(!maps_have_shim("7f00-7f01 r-xp 00000000 08:01 1234 /usr/lib/libc.so.6\n"));
    }
}
