//! What an executable is, read from its headers without allocating: the exec hooks
//! ([`crate::exec`]) decide with it whether a program needs `dilation-trap`.
//!
//! The rule and the marks are those of the harness's classifier (`dilation::elf`, built on
//! `object`; the marks are `dilation_abi::exe`'s):
//! - static: no `PT_INTERP` program header;
//! - Go: a `.go.buildinfo`, `.gopclntab` or `.note.go.buildid` section; an image without
//!   section headers, the build-info magic at a 16-byte boundary in the first 64 KiB of its
//!   first writable segment (where Go's linker puts it, and where `debug/buildinfo` looks);
//! - foreign: another word size or machine than this host's;
//! - a `#!` script: [`interpreter`] names the program the kernel runs for it.
//!
//! # Design
//! Everything is read with `pread` into fixed buffers on the caller's stack (the first 256
//! bytes of the file, 512 bytes of headers at a time, the first KiB of the section name
//! table): the exec hooks also run in `vfork` children, between `fork` and `exec` of
//! multi-threaded programs and in signal handlers, where nothing may allocate or lock. Any
//! read that fails or comes short makes the image [`Kind::Unknown`], which the hooks execute
//! as asked. Plain code over a [`Source`], so the tests run it on byte slices and files.
//!
//! # Limitations
//! Unlike `dilation::elf` (which scans a whole image without section headers for the Go
//! marks), the magic is looked for only where the Go linker puts it; tables beyond
//! [`MAX_RECORDS`] entries make the image [`Kind::Unknown`].

use dilation_abi::exe::{GO_BUILDINFO_MAGIC, GO_SECTIONS};

/// Bytes of a file's head read first: the ELF header, or the `#!` line (the kernel reads
/// the same 256 bytes, `BINPRM_BUF_SIZE`).
pub(crate) const HEAD: usize = 256;
/// Program or section headers read beyond this count make the image unknown.
pub(crate) const MAX_RECORDS: usize = 4096;
/// Bytes of the section name table kept at once; names past it are read one by one.
const NAMES: usize = 1024;
/// Bytes of headers read at a time.
const CHUNK: usize = 512;
/// How far into the first writable segment the build-info magic is looked for.
const BUILDINFO_SPAN: u64 = 64 * 1024;

/// What an executable is, as far as dilation is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A native ELF image.
    Elf { interp: bool, go: bool },
    /// An ELF image of another word size or machine.
    Foreign,
    /// A `#!` script (the head holds its first line).
    Script,
    /// Neither, or not readable.
    Unknown,
}

impl Kind {
    /// Whether only the syscall trap reaches it: a native Go or static program (x86_64, the
    /// trap's only architecture).
    pub(crate) fn needs_trap(self) -> bool {
        cfg!(target_arch = "x86_64") && matches!(self, Kind::Elf { interp: false, .. } | Kind::Elf { go: true, .. })
    }
}

/// Something to read bytes from at an offset (a file descriptor, a byte slice in tests).
pub(crate) trait Source {
    /// Reads up to `buf.len()` bytes at `offset`; the count read (short only at the end),
    /// `None` on an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize>;
}

impl Source for &[u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        let rest = self.get(usize::try_from(offset).ok()?..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)?.copy_from_slice(rest.get(..n)?);
        Some(n)
    }
}

/// Reads exactly `buf.len()` bytes at `offset`.
fn read_exact(src: &impl Source, offset: u64, buf: &mut [u8]) -> Option<()> {
    (src.read_at(offset, buf)? == buf.len()).then_some(())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Classifies the executable `src`; its first [`HEAD`] bytes are left in `head` (zero
/// padded), where [`interpreter`] finds a script's interpreter.
pub(crate) fn classify(src: &impl Source, head: &mut [u8; HEAD]) -> Kind {
    *head = [0; HEAD];
    let Some(n) = src.read_at(0, head) else { return Kind::Unknown };
    if head.starts_with(b"#!") {
        return Kind::Script;
    }
    if n < 64 || !head.starts_with(b"\x7fELF") {
        return Kind::Unknown;
    }
    if !native(head) {
        return Kind::Foreign;
    }
    elf(src, head).unwrap_or(Kind::Unknown)
}

/// Whether an ELF identification is this host's class and machine (64-bit little-endian).
fn native(ident: &[u8]) -> bool {
    const CLASS_64: u8 = 2;
    const LITTLE_ENDIAN: u8 = 1;
    const X86_64: u16 = 62;
    const AARCH64: u16 = 183;
    let want = if cfg!(target_arch = "aarch64") { AARCH64 } else { X86_64 };
    ident.get(4) == Some(&CLASS_64) && ident.get(5) == Some(&LITTLE_ENDIAN) && u16_at(ident, 18) == Some(want)
}

/// Calls `f` on each of `count` records of `size` bytes at `offset`, read a chunk at a
/// time, until it returns `Some`. `None` when a read fails or the table is too large.
fn find_record<R>(
    src: &impl Source,
    offset: u64,
    size: usize,
    count: usize,
    mut f: impl FnMut(&[u8]) -> Option<R>,
) -> Option<Option<R>> {
    if size == 0 || size > CHUNK || count > MAX_RECORDS {
        return None;
    }
    let per_chunk = CHUNK / size;
    let mut chunk = [0u8; CHUNK];
    let mut i = 0;
    while i < count {
        let k = per_chunk.min(count - i);
        let at = offset.checked_add(u64::try_from(i * size).ok()?)?;
        let buf = chunk.get_mut(..k * size)?;
        read_exact(src, at, buf)?;
        for record in buf.chunks_exact(size) {
            if let Some(r) = f(record) {
                return Some(Some(r));
            }
        }
        i += k;
    }
    Some(None)
}

/// Reads a native 64-bit ELF image's program and section headers. Only an executable the
/// kernel would load (`ET_EXEC` or `ET_DYN`, with a `PT_LOAD`) is [`Kind::Elf`].
fn elf(src: &impl Source, header: &[u8]) -> Option<Kind> {
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    const PT_LOAD: u32 = 1;
    const PT_INTERP: u32 = 3;
    const PF_W: u32 = 2;
    if !matches!(u16_at(header, 16)?, ET_EXEC | ET_DYN) {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(header, 32)?, u16_at(header, 54)?, u16_at(header, 56)?);
    let (mut load, mut interp, mut data) = (false, false, None);
    find_record(src, phoff, usize::from(phentsize), usize::from(phnum), |ph| {
        let kind = u32_at(ph, 0)?;
        load |= kind == PT_LOAD;
        interp |= kind == PT_INTERP;
        if kind == PT_LOAD && data.is_none() && u32_at(ph, 4)? & PF_W != 0 {
            data = u64_at(ph, 8);
        }
        None::<()>
    })?;
    if !load {
        return None;
    }
    let go = match go_sections(src, header)? {
        Some(go) => go,
        None => data.is_some_and(|at| buildinfo_at(src, at)),
    };
    Some(Kind::Elf { interp, go })
}

/// Whether a Go section is among the section headers; `Some(None)` when there are none.
fn go_sections(src: &impl Source, header: &[u8]) -> Option<Option<bool>> {
    const SHN_XINDEX: u16 = 0xffff;
    let (shoff, shentsize) = (u64_at(header, 40)?, usize::from(u16_at(header, 58)?));
    if shoff == 0 {
        return Some(None);
    }
    if shentsize < 64 {
        return None;
    }
    // Section 0 holds the count and the name table's index when they do not fit the header.
    let mut first = [0u8; 64];
    read_exact(src, shoff, &mut first)?;
    let count = match u16_at(header, 60)? {
        0 => usize::try_from(u64_at(&first, 32)?).ok()?,
        n => usize::from(n),
    };
    let names_index = match u16_at(header, 62)? {
        SHN_XINDEX => u64::from(u32_at(&first, 40)?),
        i => u64::from(i),
    };
    if count == 0 {
        return Some(None);
    }
    let mut table = [0u8; 64];
    read_exact(src, shoff.checked_add(names_index.checked_mul(shentsize as u64)?)?, &mut table)?;
    let (names_at, names_len) = (u64_at(&table, 24)?, u64_at(&table, 32)?);
    let mut names = [0u8; NAMES];
    let kept = usize::try_from(names_len).unwrap_or(NAMES).min(NAMES);
    read_exact(src, names_at, names.get_mut(..kept)?)?;
    let found = find_record(src, shoff, shentsize, count, |sh| {
        let at = usize::try_from(u32_at(sh, 0)?).ok()?;
        // The longest mark and its NUL: ".note.go.buildid\0".
        let mut name = [0u8; 17];
        match names.get(at..at + name.len()).filter(|_| at + name.len() <= kept) {
            Some(kept_name) => name.copy_from_slice(kept_name),
            // Past the kept part (or near the end of the table): read the name itself; a
            // short read leaves zeros, which end the name.
            None => {
                src.read_at(names_at.checked_add(at as u64)?, &mut name)?;
            }
        }
        GO_SECTIONS.iter().any(|s| name.starts_with(s.as_bytes()) && name.get(s.len()) == Some(&0)).then_some(())
    })?;
    Some(Some(found.is_some()))
}

/// Whether the build-info magic stands at a 16-byte boundary within the first
/// [`BUILDINFO_SPAN`] bytes at file offset `at`.
fn buildinfo_at(src: &impl Source, at: u64) -> bool {
    let start = at & !15;
    let mut chunk = [0u8; CHUNK];
    let mut off = 0;
    while off < BUILDINFO_SPAN {
        let Some(n) = src.read_at(start.saturating_add(off), &mut chunk) else { return false };
        let read = chunk.get(..n).unwrap_or_default();
        if read.chunks(16).any(|slot| slot.starts_with(GO_BUILDINFO_MAGIC)) {
            return true;
        }
        if n < CHUNK {
            return false;
        }
        off += CHUNK as u64;
    }
    false
}

/// The interpreter a `#!` head names (the path up to a blank, a newline or the end), made
/// NUL-terminated in place; `None` when the line is empty or fills the head (as for the
/// kernel, which refuses a truncated interpreter name).
pub(crate) fn interpreter(head: &mut [u8; HEAD]) -> Option<&core::ffi::CStr> {
    let line = head.get(2..)?;
    let start = 2 + line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let len = head.get(start..)?.iter().position(|&b| matches!(b, b' ' | b'\t' | b'\n' | 0))?;
    if len == 0 {
        return None;
    }
    *head.get_mut(start + len)? = 0;
    core::ffi::CStr::from_bytes_until_nul(head.get(start..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::{Path, PathBuf};
    use std::process::Command;

    use dilation::elf::test_image as image;

    /// A file opened for the classifier, through `std` (the hooks read through raw
    /// `pread`; the parsing is the same).
    struct File(std::fs::File);

    impl Source for File {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
            let mut n = 0;
            while n < buf.len() {
                match std::os::unix::fs::FileExt::read_at(&self.0, &mut buf[n..], offset + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(_) => return None,
                }
            }
            Some(n)
        }
    }

    fn kind_of(path: &Path) -> Kind {
        classify(&File(std::fs::File::open(path).unwrap()), &mut [0; HEAD])
    }

    /// The harness's classifier on the same file: the two must agree on every real binary.
    fn agrees_with_the_library(path: &Path) {
        use dilation::program::ProgramKind as P;
        let ours = kind_of(path);
        let theirs = dilation::elf::classify_file(path).unwrap();
        let expected = match theirs {
            Some(P::Dynamic) => Kind::Elf { interp: true, go: false },
            Some(P::DynamicGo) => Kind::Elf { interp: true, go: true },
            Some(P::Static) => Kind::Elf { interp: false, go: false },
            Some(P::StaticGo) => Kind::Elf { interp: false, go: true },
            Some(P::Foreign) => Kind::Foreign,
            None => ours,
        };
        assert_eq!(ours, expected, "{}: the shim and dilation::elf disagree", path.display());
    }

    fn kind(b: &[u8]) -> Kind {
        classify(&b, &mut [0; HEAD])
    }

    #[test]
    fn images_without_sections() {
        assert_eq!(kind(&image(true, b"")), Kind::Elf { interp: true, go: false });
        assert_eq!(kind(&image(false, b"")), Kind::Elf { interp: false, go: false });
        // The data starts at 120: the magic at 176, a 16-byte boundary.
        let mut magic = vec![0u8; 56];
        magic.extend_from_slice(b"\xff Go buildinf:\x08\x02");
        assert_eq!(kind(&image(false, &magic)), Kind::Elf { interp: false, go: true });
        // Off a 16-byte boundary it is not the build information.
        assert_eq!(kind(&image(false, &magic[8..])), Kind::Elf { interp: false, go: false });
        let mut i386 = image(true, b"");
        i386[4] = 1;
        assert_eq!(kind(&i386), Kind::Foreign);
        assert_eq!(kind(&image(true, b"")[..150]), Kind::Unknown, "truncated program headers");
        let mut object = image(false, b"");
        object[16] = 1;
        assert_eq!(kind(&object), Kind::Unknown, "a relocatable object is not executed");
        let mut no_load = image(false, b"");
        no_load[64] = 4;
        assert_eq!(kind(&no_load), Kind::Unknown, "nothing to load");
        assert_eq!(kind(b""), Kind::Unknown);
        assert_eq!(kind(b"hello, world"), Kind::Unknown);
        assert!(Kind::Elf { interp: false, go: false }.needs_trap() == cfg!(target_arch = "x86_64"));
        assert!(Kind::Elf { interp: true, go: true }.needs_trap() == cfg!(target_arch = "x86_64"));
        for k in [Kind::Elf { interp: true, go: false }, Kind::Foreign, Kind::Script, Kind::Unknown] {
            assert!(!k.needs_trap(), "{k:?}");
        }
    }

    #[test]
    fn a_section_name_past_the_kept_table_is_read() {
        // A dynamic image whose one section is named ".gopclntab" at offset 1500 of a
        // 1600-byte name table (past the first KiB).
        let mut b = image(true, b"");
        let names_at = b.len() as u64;
        let mut names = vec![b'x'; 1600];
        names[1499] = 0;
        names[1500..1511].copy_from_slice(b".gopclntab\0");
        b.extend_from_slice(&names);
        let shoff = b.len() as u64;
        let mut sh = [0u8; 64];
        sh[0..4].copy_from_slice(&1500u32.to_le_bytes());
        sh[24..32].copy_from_slice(&names_at.to_le_bytes());
        sh[32..40].copy_from_slice(&1600u64.to_le_bytes());
        b.extend_from_slice(&sh);
        b[40..48].copy_from_slice(&shoff.to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        b[60..62].copy_from_slice(&1u16.to_le_bytes());
        b[62..64].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(kind(&b), Kind::Elf { interp: true, go: true });
        // The same name cut short is not Go's.
        let at = shoff as usize;
        b[at..at + 4].copy_from_slice(&1501u32.to_le_bytes());
        assert_eq!(kind(&b), Kind::Elf { interp: true, go: false });
    }

    #[test]
    fn scripts_name_their_interpreter() {
        let mut head = [0u8; HEAD];
        let cases: [(&[u8], Option<&str>); 6] = [
            (b"#!/bin/sh\nexit 0\n", Some("/bin/sh")),
            (b"#! /usr/bin/env  python3 -u\n", Some("/usr/bin/env")),
            (b"#!/bin/busybox", Some("/bin/busybox")),
            (b"#!\t/x\tsh\n", Some("/x")),
            (b"#!\n", None),
            (b"#!   ", None),
        ];
        for (line, want) in cases {
            assert_eq!(classify(&line, &mut head), Kind::Script);
            let got = interpreter(&mut head).map(|c| c.to_str().unwrap().to_owned());
            assert_eq!(got.as_deref(), want, "{:?}", String::from_utf8_lossy(line));
        }
        let mut long = b"#!/".to_vec();
        long.extend_from_slice(&[b'a'; HEAD]);
        assert_eq!(classify(&&long[..], &mut head), Kind::Script);
        assert_eq!(interpreter(&mut head), None, "an interpreter name the head truncates");
    }

    fn tool(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
    }

    /// Runs the build `cmd` of `exe`; `None` (and a skip notice) when its tool is missing
    /// or the build fails (`scripts/setup` installs gcc, libc.a and golang-go).
    fn built(what: &str, cmd: Command, exe: &Path) -> Option<PathBuf> {
        let mut cmd = cmd;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let why = match tool(&program).map(|_| cmd.output()) {
            None => format!("{program} is not installed"),
            Some(Ok(out)) if out.status.success() => return Some(exe.to_owned()),
            Some(Ok(out)) => format!("{program} failed: {}", String::from_utf8_lossy(&out.stderr)),
            Some(Err(e)) => format!("{program}: {e}"),
        };
        println!("SKIPPED: real_binaries ({what}): {why}");
        None
    }

    #[test]
    fn real_binaries() {
        let sh = Path::new("/bin/sh");
        assert_eq!(kind_of(sh), Kind::Elf { interp: true, go: false });
        agrees_with_the_library(sh);
        let me = std::env::current_exe().unwrap();
        assert_eq!(kind_of(&me), Kind::Elf { interp: true, go: false }, "this test binary: dynamic Rust");
        agrees_with_the_library(&me);
        let dir = tempfile::tempdir().unwrap();

        // A static C program.
        let c = dir.path().join("hello.c");
        std::fs::write(&c, "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n").unwrap();
        let mut gcc = Command::new("gcc");
        gcc.arg("-static").arg("-o").arg(dir.path().join("hello-static")).arg(&c);
        if let Some(exe) = built("static C", gcc, &dir.path().join("hello-static")) {
            assert_eq!(kind_of(&exe), Kind::Elf { interp: false, go: false });
            assert!(kind_of(&exe).needs_trap() == cfg!(target_arch = "x86_64"));
            agrees_with_the_library(&exe);
            // Stripped of its symbols: still static.
            let _ = Command::new("strip").arg(&exe).status();
            assert_eq!(kind_of(&exe), Kind::Elf { interp: false, go: false });
        }

        // A Go program, static (no cgo) and stripped.
        let src = dir.path().join("hello.go");
        std::fs::write(&src, "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hi\") }\n").unwrap();
        let mut go = Command::new("go");
        go.args(["build", "-ldflags=-s -w", "-o"])
            .arg(dir.path().join("hello-go"))
            .arg(&src)
            .env("HOME", dir.path())
            .env("GOCACHE", dir.path().join("gocache"))
            .env("GOPATH", dir.path().join("gopath"))
            .env("CGO_ENABLED", "0")
            .env("GO111MODULE", "off");
        if let Some(exe) = built("Go", go, &dir.path().join("hello-go")) {
            assert_eq!(kind_of(&exe), Kind::Elf { interp: false, go: true });
            agrees_with_the_library(&exe);
        }

        // Debian's etcd, a dynamically linked Go program, when installed.
        if let Some(etcd) = tool("etcd") {
            assert_eq!(kind_of(&etcd), Kind::Elf { interp: true, go: true });
            assert!(kind_of(&etcd).needs_trap() == cfg!(target_arch = "x86_64"));
            agrees_with_the_library(&etcd);
        }
        // A script: classified by its interpreter, which the hooks open themselves.
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        assert_eq!(kind_of(&script), Kind::Script);
    }
}
