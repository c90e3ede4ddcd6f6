//! Hiding the vDSO from a freshly executed image.
//!
//! At `PTRACE_EVENT_EXEC` the new program has not run yet; its initial stack is
//! `argc, argv[], NULL, envp[], NULL, auxv pairs…, AT_NULL`. Turning the `AT_SYSINFO_EHDR`
//! entry into `AT_IGNORE` makes glibc (static or dynamic) and the Go runtime believe there
//! is no vDSO, so they read clocks through the `clock_gettime`/`gettimeofday`/`time`
//! system calls, which the seccomp filter traps. The kernel's own copy
//! (`/proc/PID/auxv`) is unchanged.

use crate::memory::Memory;

const AT_NULL: u64 = 0;
const AT_IGNORE: u64 = 1;
const AT_SYSINFO_EHDR: u64 = 33;
/// More would mean a corrupt stack; stop instead of walking off it.
const MAX_WORDS: u64 = 1 << 20;

/// Walks the initial stack at `sp`; returns the address of the `AT_SYSINFO_EHDR` entry and
/// its value (the vDSO's base), if there is one.
fn find_vdso(mem: &impl Memory, sp: u64) -> std::io::Result<Option<(u64, u64)>> {
    let argc = mem.read_u64(sp)?;
    if argc > MAX_WORDS {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("argc {argc} at the exec stop")));
    }
    // argv[argc] is NULL; the environment follows.
    let mut at = sp + 8 * (argc + 2);
    let mut n = 0;
    while mem.read_u64(at)? != 0 {
        at += 8;
        n += 1;
        if n > MAX_WORDS {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "unterminated environment"));
        }
    }
    at += 8;
    for _ in 0..256 {
        let kind = mem.read_u64(at)?;
        if kind == AT_NULL {
            return Ok(None);
        }
        if kind == AT_SYSINFO_EHDR {
            return Ok(Some((at, mem.read_u64(at + 8)?)));
        }
        at += 16;
    }
    Ok(None)
}

/// Walks the initial stack at `sp` and hides the vDSO. Returns whether an entry was found.
pub fn hide_vdso(mem: &impl Memory, sp: u64) -> std::io::Result<bool> {
    match find_vdso(mem, sp)? {
        Some((at, _)) => {
            mem.write(at, &AT_IGNORE.to_le_bytes())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The vDSO's base address from the initial stack at `sp`, if the image has one.
pub fn vdso_base(mem: &impl Memory, sp: u64) -> std::io::Result<Option<u64>> {
    Ok(find_vdso(mem, sp)?.map(|(_, base)| base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BufferMemory;

    fn stack(words: &[u64]) -> BufferMemory {
        BufferMemory { base: 0x1000, bytes: words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<_>>().into() }
    }

    #[test]
    fn the_vdso_entry_becomes_ignored() {
        // argc=2, argv, NULL, 1 env, NULL, auxv: AT_PAGESZ, AT_SYSINFO_EHDR, AT_NULL
        let mem = stack(&[2, 0xa, 0xb, 0, 0xe, 0, 6, 4096, 33, 0x7fff_0000, 0, 0]);
        assert!(hide_vdso(&mem, 0x1000).unwrap());
        assert_eq!(mem.read_u64(0x1000 + 8 * 8).unwrap(), AT_IGNORE);
        assert_eq!(mem.read_u64(0x1000 + 6 * 8).unwrap(), 6, "other entries untouched");
        let mem = stack(&[2, 0xa, 0xb, 0, 0xe, 0, 6, 4096, 33, 0x7fff_0000, 0, 0]);
        assert_eq!(vdso_base(&mem, 0x1000).unwrap(), Some(0x7fff_0000));
    }

    #[test]
    fn no_vdso_no_change() {
        let mem = stack(&[0, 0, 0, 6, 4096, 0, 0]);
        assert!(!hide_vdso(&mem, 0x1000).unwrap());
        assert_eq!(vdso_base(&mem, 0x1000).unwrap(), None);
    }

    #[test]
    fn a_truncated_stack_is_an_error() {
        let mem = stack(&[1, 0xa, 0, 0xe]);
        assert!(hide_vdso(&mem, 0x1000).is_err());
    }
}
