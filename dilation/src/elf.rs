//! What an executable is, as far as dilation is concerned, read from its ELF headers.
//!
//! - static: no `PT_INTERP` program header;
//! - Go: a `.go.buildinfo`, `.gopclntab` or `.note.go.buildid` section (Go keeps its section
//!   headers when stripped); an image without section headers is searched for the build-info
//!   magic `\xff Go buildinf:` instead;
//! - foreign: another word size or machine than this host's.
//!
//! # Design
//! Only the headers and the section name table are read (a few KiB, through `object`'s
//! `ReadCache`), never the whole file. The fidelity monitor classifies every process of every
//! node at every sample, and the workload binaries are 50–90 MB with debug information:
//! reading and scanning them whole made one pass of the engine's loop take seconds, so faults
//! fired and restarted nodes were seen ready seconds late, and the harness took CPU from the
//! nodes while it scanned.
//!
//! The shim has a second, allocation-free reader of the same marks for its exec hooks
//! (`dilation/shim/src/elf.rs`); its tests check that both agree on real binaries.

use std::fs::File;
use std::io;
use std::path::Path;

use dilation_abi::exe::{GO_BUILDINFO_MAGIC, GO_SECTIONS};
use object::read::elf::{ElfFile64, ProgramHeader as _};
use object::read::{ReadCache, ReadRef};
use object::{elf, Endianness, Object};

use crate::program::ProgramKind;

/// What marks a Go image without section headers.
const GO_MARKS: [&[u8]; 3] = [GO_BUILDINFO_MAGIC, b"\0.gopclntab\0", b"\0.go.buildinfo\0"];

/// The kind of the executable file at `path`; `None` when it is not ELF (a script).
pub fn classify_file(path: &Path) -> io::Result<Option<ProgramKind>> {
    let cache = ReadCache::new(File::open(path)?);
    Ok(classify(&cache))
}

/// The kind of an ELF image, `None` when `data` is not ELF.
pub fn classify<'d, R: ReadRef<'d>>(data: R) -> Option<ProgramKind> {
    let ident = data.read_bytes_at(0, 20).ok()?;
    if &ident[..4] != b"\x7fELF" {
        return None;
    }
    if !native(ident) {
        return Some(ProgramKind::Foreign);
    }
    // A native header that does not parse: no mechanism is known to fail on it, so the
    // default one is tried (and the in-node clock check judges the result).
    let Ok(file) = ElfFile64::<Endianness, R>::parse(data) else { return Some(ProgramKind::Dynamic) };
    let endian = file.endian();
    let is_static = !file.elf_program_headers().iter().any(|p| p.p_type(endian) == elf::PT_INTERP);
    let go = if file.elf_section_table().is_empty() {
        GO_MARKS.iter().any(|m| contains(data, m))
    } else {
        GO_SECTIONS.iter().any(|name| file.section_by_name(name).is_some())
    };
    Some(match (is_static, go) {
        (true, true) => ProgramKind::StaticGo,
        (true, false) => ProgramKind::Static,
        (false, true) => ProgramKind::DynamicGo,
        (false, false) => ProgramKind::Dynamic,
    })
}

/// Whether an ELF identification is this host's class and machine (64-bit little-endian).
fn native(ident: &[u8]) -> bool {
    const CLASS_64: u8 = 2;
    const LITTLE_ENDIAN: u8 = 1;
    const X86_64: u16 = 62;
    const AARCH64: u16 = 183;
    let machine = u16::from_le_bytes([ident[18], ident[19]]);
    let want = if cfg!(target_arch = "aarch64") { AARCH64 } else { X86_64 };
    ident[4] == CLASS_64 && ident[5] == LITTLE_ENDIAN && machine == want
}

/// Whether `needle` occurs in `data`, read in chunks that overlap by the needle's length.
fn contains<'d, R: ReadRef<'d>>(data: R, needle: &[u8]) -> bool {
    const CHUNK: u64 = 1 << 20;
    let Ok(len) = data.len() else { return false };
    let step = CHUNK - needle.len() as u64;
    let mut at = 0;
    while at < len {
        let Ok(chunk) = data.read_bytes_at(at, CHUNK.min(len - at)) else { return false };
        if chunk.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        at += step;
    }
    false
}

/// A minimal 64-bit ELF executable of this host's machine for tests (this crate's and, with
/// the `test-images` feature, the shim's): the header, a writable `PT_LOAD` whose data is
/// `extra`, then with `interp` a `PT_INTERP`, and no section headers. The data starts at
/// offset 120 without `interp`, 176 with it.
#[cfg(any(test, feature = "test-images"))]
pub fn test_image(interp: bool, extra: &[u8]) -> Vec<u8> {
    let headers: u16 = if interp { 2 } else { 1 };
    let data = 64 + 56 * usize::from(headers);
    let mut b = vec![0u8; data];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    let machine: u16 = if cfg!(target_arch = "aarch64") { 183 } else { 62 };
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&headers.to_le_bytes());
    // PT_LOAD, PF_R | PF_W, the data right after the headers.
    b[64..68].copy_from_slice(&1u32.to_le_bytes());
    b[68..72].copy_from_slice(&6u32.to_le_bytes());
    b[72..80].copy_from_slice(&(data as u64).to_le_bytes());
    if interp {
        b[120..124].copy_from_slice(&3u32.to_le_bytes());
    }
    b.extend_from_slice(extra);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_image as image;

    #[test]
    fn kinds_of_images_without_sections() {
        assert_eq!(classify(&image(true, b"")[..]), Some(ProgramKind::Dynamic));
        assert_eq!(classify(&image(false, b"")[..]), Some(ProgramKind::Static));
        assert_eq!(classify(&image(false, b"xx\xff Go buildinf:\x08\x02")[..]), Some(ProgramKind::StaticGo));
        assert_eq!(classify(&image(true, b"\0.gopclntab\0")[..]), Some(ProgramKind::DynamicGo));
        assert_eq!(classify(&b"#!/bin/sh\n"[..]), None);
        assert_eq!(classify(&b""[..]), None);
        let mut i386 = image(true, b"");
        i386[4] = 1;
        assert_eq!(classify(&i386[..]), Some(ProgramKind::Foreign));
        let mut arm = image(false, b"");
        arm[18..20].copy_from_slice(&40u16.to_le_bytes());
        assert_eq!(classify(&arm[..]), Some(ProgramKind::Foreign));
    }

    #[test]
    fn a_mark_across_a_chunk_boundary_is_found() {
        let mut big = image(false, &vec![0u8; (1 << 20) - 126]);
        big.extend_from_slice(b"\xff Go buildinf:");
        big.extend_from_slice(&[0u8; 64]);
        assert_eq!(classify(&big[..]), Some(ProgramKind::StaticGo));
    }

    #[test]
    fn real_binaries_are_read_from_their_headers() {
        // The shell is a dynamic C program with section headers: its kind comes from the
        // section table, not a scan.
        assert_eq!(classify_file(Path::new("/bin/sh")).unwrap(), Some(ProgramKind::Dynamic));
        // This test binary: dynamic Rust.
        let me = std::env::current_exe().unwrap();
        assert_eq!(classify_file(&me).unwrap(), Some(ProgramKind::Dynamic));
    }
}
