//! Checks that the shim can work on a process: is it loaded, can it be loaded at all.

use std::path::{Path, PathBuf};

/// File name of the shim.
pub const SHIM_NAME: &str = "libdilation.so";

/// Whether process `pid` has the shim mapped (`/proc/PID/maps`).
pub fn shim_loaded(pid: u32) -> std::io::Result<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(maps_have_shim(&maps))
}

fn maps_have_shim(maps: &str) -> bool {
    maps.lines().any(|l| l.split_whitespace().nth(5).is_some_and(|p| p.ends_with(SHIM_NAME)))
}

/// Whether the ELF file at `path` is statically linked (no `PT_INTERP`): LD_PRELOAD cannot
/// reach it. Non-ELF files (scripts) are not static: their interpreter is what runs.
pub fn binary_is_static(path: &Path) -> std::io::Result<bool> {
    let bytes = std::fs::read(path)?;
    Ok(elf_is_static(&bytes))
}

/// Whether an ELF image has no `PT_INTERP` (see [`binary_is_static`]).
pub fn elf_is_static(b: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return false;
    }
    let is64 = b[4] == 2;
    let le = b[5] == 1;
    let u16_at = |o: usize| {
        b.get(o..o + 2).map(|s| if le { u16::from_le_bytes([s[0], s[1]]) } else { u16::from_be_bytes([s[0], s[1]]) })
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4).map(|s| {
            let a = [s[0], s[1], s[2], s[3]];
            if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        })
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8).map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            if le {
                u64::from_le_bytes(a)
            } else {
                u64::from_be_bytes(a)
            }
        })
    };
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(32).map(|v| v as usize), u16_at(54), u16_at(56))
    } else {
        (u32_at(28).map(|v| v as usize), u16_at(42), u16_at(44))
    };
    let (Some(phoff), Some(size), Some(num)) = (phoff, phentsize, phnum) else { return false };
    !(0..num as usize).any(|i| u32_at(phoff + i * size as usize) == Some(PT_INTERP))
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

    #[test]
    fn dynamic_binaries_are_not_static() {
        assert!(!binary_is_static(Path::new("/bin/sh")).unwrap());
        assert!(!elf_is_static(b"#!/bin/sh\necho hi\n"));
    }

    #[test]
    fn an_elf_without_interpreter_is_static() {
        // A minimal 64-bit little-endian ELF header with one PT_LOAD program header.
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert!(elf_is_static(&b));
        b[64..68].copy_from_slice(&3u32.to_le_bytes());
        assert!(!elf_is_static(&b));
    }
}
