//! Hiding the vDSO from a freshly executed image.
//!
//! At `PTRACE_EVENT_EXEC` the new program has not run yet; its initial stack is
//! `argc, argv[], NULL, envp[], NULL, auxv pairs…, AT_NULL`. Turning the `AT_SYSINFO_EHDR`
//! entry into `AT_IGNORE` makes glibc (static or dynamic) and the Go runtime believe there
//! is no vDSO, so they read clocks through the `clock_gettime`/`gettimeofday`/`time`
//! system calls, which the seccomp filter traps. The kernel's own copy
//! (`/proc/PID/auxv`) is unchanged.
//!
//! A 32-bit (i386) image has the same stack of 4-byte words ([`Width::W32`]); its vDSO is
//! hidden too, so that its clock reads become i386 system calls, which the filter refuses
//! (`crate::filter`): the trap cannot dilate such a program, but it does not let it read
//! real time through its vDSO either.

use crate::memory::Memory;

const AT_NULL: u64 = 0;
const AT_IGNORE: u64 = 1;
const AT_SYSINFO_EHDR: u64 = 33;
/// More would mean a corrupt stack; stop instead of walking off it.
const MAX_WORDS: u64 = 1 << 20;

/// The word size of an image's initial stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// An x86-64 image.
    W64,
    /// An i386 image.
    W32,
}

impl Width {
    fn bytes(self) -> u64 {
        match self {
            Width::W64 => 8,
            Width::W32 => 4,
        }
    }

    fn read(self, mem: &impl Memory, at: u64) -> std::io::Result<u64> {
        match self {
            Width::W64 => mem.read_u64(at),
            Width::W32 => {
                let mut b = [0u8; 4];
                mem.read(at, &mut b)?;
                Ok(u64::from(u32::from_le_bytes(b)))
            }
        }
    }
}

/// Walks the initial stack at `sp`; returns the address of the `AT_SYSINFO_EHDR` entry and
/// its value (the vDSO's base), if there is one.
fn find_vdso(mem: &impl Memory, sp: u64, width: Width) -> std::io::Result<Option<(u64, u64)>> {
    let w = width.bytes();
    let argc = width.read(mem, sp)?;
    if argc > MAX_WORDS {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("argc {argc} at the exec stop")));
    }
    // argv[argc] is NULL; the environment follows.
    let mut at = sp + w * (argc + 2);
    let mut n = 0;
    while width.read(mem, at)? != 0 {
        at += w;
        n += 1;
        if n > MAX_WORDS {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "unterminated environment"));
        }
    }
    at += w;
    for _ in 0..256 {
        let kind = width.read(mem, at)?;
        if kind == AT_NULL {
            return Ok(None);
        }
        if kind == AT_SYSINFO_EHDR {
            return Ok(Some((at, width.read(mem, at + w)?)));
        }
        at += 2 * w;
    }
    Ok(None)
}

/// Walks the initial stack at `sp` and hides the vDSO. Returns whether an entry was found.
pub fn hide_vdso(mem: &impl Memory, sp: u64, width: Width) -> std::io::Result<bool> {
    match find_vdso(mem, sp, width)? {
        Some((at, _)) => {
            let ignore = AT_IGNORE.to_le_bytes();
            mem.write(at, &ignore[..width.bytes() as usize])?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The vDSO's base address from the initial stack at `sp` of an x86-64 image, if it has one.
pub fn vdso_base(mem: &impl Memory, sp: u64) -> std::io::Result<Option<u64>> {
    Ok(find_vdso(mem, sp, Width::W64)?.map(|(_, base)| base))
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
        assert!(hide_vdso(&mem, 0x1000, Width::W64).unwrap());
        assert_eq!(mem.read_u64(0x1000 + 8 * 8).unwrap(), AT_IGNORE);
        assert_eq!(mem.read_u64(0x1000 + 6 * 8).unwrap(), 6, "other entries untouched");
        let mem = stack(&[2, 0xa, 0xb, 0, 0xe, 0, 6, 4096, 33, 0x7fff_0000, 0, 0]);
        assert_eq!(vdso_base(&mem, 0x1000).unwrap(), Some(0x7fff_0000));
    }

    #[test]
    fn no_vdso_no_change() {
        let mem = stack(&[0, 0, 0, 6, 4096, 0, 0]);
        assert!(!hide_vdso(&mem, 0x1000, Width::W64).unwrap());
        assert_eq!(vdso_base(&mem, 0x1000).unwrap(), None);
    }

    #[test]
    fn a_truncated_stack_is_an_error() {
        let mem = stack(&[1, 0xa, 0, 0xe]);
        assert!(hide_vdso(&mem, 0x1000, Width::W64).is_err());
    }

    #[test]
    fn a_32_bit_stack_has_4_byte_words() {
        // argc=1, argv, NULL, 2 env, NULL, auxv: AT_SYSINFO (32), AT_SYSINFO_EHDR, AT_NULL
        let words: [u32; 13] = [1, 0xa, 0, 0xe, 0xf, 0, 32, 0xf7f0_0400, 33, 0xf7f0_0000, 0, 0, 0];
        let mem =
            BufferMemory { base: 0x1000, bytes: words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<_>>().into() };
        assert!(hide_vdso(&mem, 0x1000, Width::W32).unwrap());
        assert_eq!(Width::W32.read(&mem, 0x1000 + 4 * 8).unwrap(), AT_IGNORE);
        assert_eq!(Width::W32.read(&mem, 0x1000 + 4 * 9).unwrap(), 0xf7f0_0000, "the value is left");
        assert_eq!(Width::W32.read(&mem, 0x1000 + 4 * 6).unwrap(), 32, "AT_SYSINFO (the syscall entry) is kept");
        // Read as a 64-bit stack, the same words make no sense.
        let mem =
            BufferMemory { base: 0x1000, bytes: words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<_>>().into() };
        assert!(hide_vdso(&mem, 0x1000, Width::W64).is_err());
    }
}
