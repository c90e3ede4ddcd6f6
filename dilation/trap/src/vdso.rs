//! Reading the vDSO image: its dynamic symbols, their versions, and a `syscall`
//! instruction to borrow for remote system calls.
//!
//! The vDSO is a small shared object that the kernel maps whole (file offset = offset from
//! its base), so the image read from a process's memory is the file, section headers
//! included. Consumers (glibc's `dl_vdso_vsym`, the Go runtime's `vdsoParseSymbols`) find
//! `__vdso_clock_gettime` and its siblings by name and version in `.dynsym` and call
//! `base + p_offset − p_vaddr + st_value`; the fast path ([`crate::fastpath`]) redirects
//! them by rewriting `st_value` ([`Image::redirects`]), never the code.
//!
//! # Invariants
//! Every offset is checked against the image before use: a malformed or unexpected image
//! is an error (the caller then hides the vDSO), never a panic.

/// Errors of reading a vDSO image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VdsoError {
    #[error("read a vDSO image: {0}")]
    Malformed(&'static str),
    #[error("find vDSO symbol {name}@{version}")]
    NoSymbol { name: &'static str, version: &'static str },
    #[error("find a syscall instruction in the vDSO")]
    NoGadget,
}

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const SHT_DYNSYM: u32 = 11;
const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;
const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;
const STT_FUNC: u8 = 2;
/// Size of an `Elf64_Sym`, and the offset of its `st_value`.
const SYM_SIZE: usize = 24;
const ST_VALUE: usize = 8;
/// The vDSO's symbol version on x86_64.
pub const VERSION: &str = "LINUX_2.6";
/// Largest image accepted (the x86_64 vDSO is 2 pages).
pub const MAX_SIZE: usize = 64 * 1024;

/// The entry points the fast path redirects, in the order of [`Image::redirects`].
pub const ENTRIES: [&str; 3] = ["__vdso_clock_gettime", "__vdso_gettimeofday", "__vdso_time"];

fn u16_at(b: &[u8], off: usize) -> Result<u16, VdsoError> {
    let s = b.get(off..off + 2).ok_or(VdsoError::Malformed("truncated"))?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, VdsoError> {
    let s = b.get(off..off + 4).ok_or(VdsoError::Malformed("truncated"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, VdsoError> {
    let s = b.get(off..off + 8).ok_or(VdsoError::Malformed("truncated"))?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Ok(u64::from_le_bytes(w))
}

fn usize_at(b: &[u8], off: usize) -> Result<usize, VdsoError> {
    usize::try_from(u64_at(b, off)?).map_err(|_| VdsoError::Malformed("offset out of range"))
}

/// A section: file offset, size, entry size, link.
#[derive(Clone, Copy, Debug)]
struct Section {
    offset: usize,
    size: usize,
    link: usize,
}

/// The length of the image from its ELF header alone (section headers end it), so that a
/// reader knows how much to fetch after the first page.
pub fn image_len(header: &[u8]) -> Result<usize, VdsoError> {
    check_header(header)?;
    let shoff = usize_at(header, 40)?;
    let shentsize = usize::from(u16_at(header, 58)?);
    let shnum = usize::from(u16_at(header, 60)?);
    let phoff = usize_at(header, 32)?;
    let phnum = usize::from(u16_at(header, 56)?);
    let len = shoff.max(phoff + 56 * phnum).checked_add(shentsize * shnum).ok_or(VdsoError::Malformed("size"))?;
    if len > MAX_SIZE {
        return Err(VdsoError::Malformed("larger than 64 KiB"));
    }
    Ok(len)
}

fn check_header(b: &[u8]) -> Result<(), VdsoError> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(VdsoError::Malformed("no ELF magic"));
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err(VdsoError::Malformed("not a 64-bit little-endian ELF"));
    }
    if u16_at(b, 18)? != 62 {
        return Err(VdsoError::Malformed("not x86_64"));
    }
    Ok(())
}

/// One redirected entry point: its original `st_value` and the file offsets of every
/// `.dynsym` entry that holds it (the `__vdso_` name and its weak alias).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub name: &'static str,
    pub value: u64,
    pub symbols: Vec<usize>,
}

/// A dynamic symbol: the file offset of its entry, name, `st_info`, `st_value`, version
/// index.
#[derive(Clone, Copy, Debug)]
struct Symbol<'a> {
    at: usize,
    name: &'a [u8],
    info: u8,
    value: u64,
    version: u16,
}

/// A parsed vDSO image.
#[derive(Debug)]
pub struct Image<'a> {
    bytes: &'a [u8],
    /// `p_offset − p_vaddr` of the loadable segment (0 in every known build).
    bias: u64,
    text: std::ops::Range<usize>,
    dynsym: Section,
    versym: Option<Section>,
    verdef: Option<Section>,
}

impl<'a> Image<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, VdsoError> {
        check_header(bytes)?;
        let phoff = usize_at(bytes, 32)?;
        let phnum = usize::from(u16_at(bytes, 56)?);
        let mut load = None;
        for i in 0..phnum {
            let ph = phoff + 56 * i;
            if u32_at(bytes, ph)? == PT_LOAD && load.is_none() {
                let flags = u32_at(bytes, ph + 4)?;
                let (off, vaddr, filesz) = (u64_at(bytes, ph + 8)?, u64_at(bytes, ph + 16)?, usize_at(bytes, ph + 32)?);
                load = Some((flags, off, vaddr, filesz));
            }
        }
        let (flags, off, vaddr, filesz) = load.ok_or(VdsoError::Malformed("no loadable segment"))?;
        // glibc computes `base − p_vaddr`, Go `base + p_offset − p_vaddr`: both agree only
        // when the segment starts at file offset 0.
        if off != 0 || flags & PF_X == 0 {
            return Err(VdsoError::Malformed("unexpected loadable segment"));
        }
        let shoff = usize_at(bytes, 40)?;
        let shentsize = usize::from(u16_at(bytes, 58)?);
        let shnum = usize::from(u16_at(bytes, 60)?);
        if shentsize != 64 {
            return Err(VdsoError::Malformed("section header size"));
        }
        let (mut dynsym, mut versym, mut verdef) = (None, None, None);
        for i in 0..shnum {
            let sh = shoff + 64 * i;
            let s = Section {
                offset: usize_at(bytes, sh + 24)?,
                size: usize_at(bytes, sh + 32)?,
                link: u32_at(bytes, sh + 40)? as usize,
            };
            if s.offset.checked_add(s.size).is_none_or(|end| end > bytes.len()) {
                return Err(VdsoError::Malformed("section outside the image"));
            }
            match u32_at(bytes, sh + 4)? {
                SHT_DYNSYM => dynsym = Some(s),
                SHT_GNU_VERSYM => versym = Some(s),
                SHT_GNU_VERDEF => verdef = Some(s),
                _ => {}
            }
        }
        let dynsym = dynsym.ok_or(VdsoError::Malformed("no .dynsym"))?;
        Ok(Self { bytes, bias: vaddr.wrapping_neg(), text: 0..filesz.min(bytes.len()), dynsym, versym, verdef })
    }

    fn section(&self, index: usize) -> Result<Section, VdsoError> {
        let shoff = usize_at(self.bytes, 40)?;
        let sh = shoff + 64 * index;
        Ok(Section {
            offset: usize_at(self.bytes, sh + 24)?,
            size: usize_at(self.bytes, sh + 32)?,
            link: u32_at(self.bytes, sh + 40)? as usize,
        })
    }

    fn string(&self, table: Section, off: usize) -> Result<&'a [u8], VdsoError> {
        let bytes: &'a [u8] = self.bytes;
        let s = bytes.get(table.offset..table.offset + table.size).ok_or(VdsoError::Malformed("string table"))?;
        let rest = s.get(off..).ok_or(VdsoError::Malformed("string offset"))?;
        let end = rest.iter().position(|&c| c == 0).ok_or(VdsoError::Malformed("unterminated string"))?;
        Ok(&rest[..end])
    }

    /// The name of version index `ndx` (from `.gnu.version_d`).
    fn version_name(&self, ndx: u16) -> Result<Option<&'a [u8]>, VdsoError> {
        let Some(vd) = self.verdef else { return Ok(None) };
        let strtab = self.section(vd.link)?;
        let mut at = vd.offset;
        for _ in 0..64 {
            if u16_at(self.bytes, at + 4)? == ndx {
                let aux = at + u32_at(self.bytes, at + 12)? as usize;
                return self.string(strtab, u32_at(self.bytes, aux)? as usize).map(Some);
            }
            match u32_at(self.bytes, at + 16)? {
                0 => return Ok(None),
                next => at += next as usize,
            }
        }
        Err(VdsoError::Malformed("version definitions do not end"))
    }

    /// Every dynamic symbol.
    fn symbols(&self) -> Result<Vec<Symbol<'a>>, VdsoError> {
        let strtab = self.section(self.dynsym.link)?;
        (0..self.dynsym.size / SYM_SIZE)
            .map(|i| {
                let at = self.dynsym.offset + SYM_SIZE * i;
                let name = self.string(strtab, u32_at(self.bytes, at)? as usize)?;
                let info = *self.bytes.get(at + 4).ok_or(VdsoError::Malformed("truncated"))?;
                let value = u64_at(self.bytes, at + ST_VALUE)?;
                let ver = match self.versym {
                    Some(v) => u16_at(self.bytes, v.offset + 2 * i)? & 0x7fff,
                    None => 0,
                };
                Ok(Symbol { at, name, info, value, version: ver })
            })
            .collect()
    }

    /// The address of `st_value` relative to the image's base, for `value`.
    pub fn address_of(&self, value: u64) -> u64 {
        value.wrapping_add(self.bias)
    }

    /// The `st_value` that makes consumers call `target − base`.
    pub fn value_for(&self, offset_from_base: u64) -> u64 {
        offset_from_base.wrapping_sub(self.bias)
    }

    /// For each of [`ENTRIES`]: its value and every symbol entry holding it (aliases are
    /// the function symbols with the same value). The named symbol must be a function of
    /// version [`VERSION`], inside the loadable segment.
    pub fn redirects(&self) -> Result<Vec<Redirect>, VdsoError> {
        let syms = self.symbols()?;
        ENTRIES
            .iter()
            .map(|&name| {
                let mut found = None;
                for s in &syms {
                    if s.name == name.as_bytes() && s.info & 0xf == STT_FUNC && s.value != 0 {
                        if self.verdef.is_some() && self.version_name(s.version)? != Some(VERSION.as_bytes()) {
                            continue;
                        }
                        found = Some(s.value);
                    }
                }
                let value = found.ok_or(VdsoError::NoSymbol { name, version: VERSION })?;
                if !self.text.contains(&(self.address_of(value) as usize)) {
                    return Err(VdsoError::Malformed("symbol outside the loadable segment"));
                }
                let symbols =
                    syms.iter().filter(|s| s.value == value && s.info & 0xf == STT_FUNC).map(|s| s.at).collect();
                Ok(Redirect { name, value, symbols })
            })
            .collect()
    }

    /// The offset of a `0f 05` (`syscall`) byte pair in the executable segment: executing
    /// from there runs one system call whatever instruction the bytes belong to.
    pub fn syscall_gadget(&self) -> Result<usize, VdsoError> {
        let text = self.bytes.get(self.text.clone()).ok_or(VdsoError::NoGadget)?;
        text.windows(2).position(|w| w == [0x0f, 0x05]).map(|p| p + self.text.start).ok_or(VdsoError::NoGadget)
    }

    /// The `st_value` stored now in the symbol entry at file offset `symbol`.
    pub fn value_at(&self, symbol: usize) -> Result<u64, VdsoError> {
        u64_at(self.bytes, symbol + ST_VALUE)
    }
}

/// The file offset of `st_value` in the symbol entry at `symbol`.
pub fn st_value_offset(symbol: usize) -> usize {
    symbol + ST_VALUE
}

/// A copy of this process's vDSO image (from `/proc/self`), for tests and checks.
pub fn own_image() -> std::io::Result<(u64, Vec<u8>)> {
    use std::os::unix::fs::FileExt;
    let auxv = std::fs::read("/proc/self/auxv")?;
    let base = auxv
        .chunks_exact(16)
        .find_map(|e| {
            let (k, v) = e.split_at(8);
            (u64::from_le_bytes(k.try_into().ok()?) == 33).then(|| u64::from_le_bytes(v.try_into().unwrap_or_default()))
        })
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no AT_SYSINFO_EHDR"))?;
    let mem = std::fs::File::open("/proc/self/mem")?;
    let mut header = vec![0u8; 64];
    mem.read_exact_at(&mut header, base)?;
    let len = image_len(&header).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let mut bytes = vec![0u8; len];
    mem.read_exact_at(&mut bytes, base)?;
    Ok((base, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Vec<u8> {
        own_image().expect("this process has a vDSO").1
    }

    #[test]
    fn this_kernels_vdso_has_the_three_entries_with_their_aliases() {
        let bytes = own();
        let img = Image::parse(&bytes).unwrap();
        let r = img.redirects().unwrap();
        assert_eq!(r.iter().map(|r| r.name).collect::<Vec<_>>(), ENTRIES);
        for e in &r {
            assert!(e.value != 0);
            // `__vdso_x` and its weak alias `x` on x86_64.
            assert!(e.symbols.len() >= 2, "{}: {:?}", e.name, e.symbols);
            for &s in &e.symbols {
                assert_eq!(img.value_at(s).unwrap(), e.value);
            }
        }
        let g = img.syscall_gadget().unwrap();
        assert_eq!(&bytes[g..g + 2], &[0x0f, 0x05]);
    }

    #[test]
    fn patching_a_copy_redirects_every_alias_and_nothing_else() {
        let mut bytes = own();
        let before = Image::parse(&bytes).unwrap().redirects().unwrap();
        let getcpu = {
            let img = Image::parse(&bytes).unwrap();
            img.symbols().unwrap().into_iter().filter(|s| s.name == b"__vdso_getcpu").map(|s| s.value).next()
        };
        for (i, r) in before.iter().enumerate() {
            let target = 0x1_0000 + 0x40 * i as u64;
            for &s in &r.symbols {
                let v = Image::parse(&bytes).unwrap().value_for(target);
                bytes[st_value_offset(s)..st_value_offset(s) + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        let img = Image::parse(&bytes).unwrap();
        for (i, r) in before.iter().enumerate() {
            for &s in &r.symbols {
                assert_eq!(img.address_of(img.value_at(s).unwrap()), 0x1_0000 + 0x40 * i as u64, "{}", r.name);
            }
        }
        // A patched image is not patched twice: its entries now lie outside the segment.
        assert_eq!(img.redirects().unwrap_err(), VdsoError::Malformed("symbol outside the loadable segment"));
        let getcpu_after =
            img.symbols().unwrap().into_iter().filter(|s| s.name == b"__vdso_getcpu").map(|s| s.value).next();
        assert_eq!(getcpu, getcpu_after, "other symbols untouched");
    }

    #[test]
    fn the_image_length_covers_the_section_headers() {
        let bytes = own();
        assert_eq!(image_len(&bytes[..64]).unwrap(), bytes.len());
    }

    #[test]
    fn malformed_images_are_errors() {
        let bytes = own();
        assert!(Image::parse(&bytes[..32]).is_err());
        let mut other = bytes.clone();
        other[18] = 183; // aarch64
        assert_eq!(Image::parse(&other).unwrap_err(), VdsoError::Malformed("not x86_64"));
        assert!(matches!(Image::parse(b"not an elf"), Err(VdsoError::Malformed(_))));
        // A truncated copy: section headers beyond the end.
        assert!(Image::parse(&bytes[..bytes.len() - 100]).is_err());
        // A renamed entry is not found (names compared exactly).
        let mut renamed = bytes.clone();
        let pos = renamed.windows(20).position(|w| w == b"__vdso_clock_gettime").unwrap();
        renamed[pos + 2] = b'X';
        assert_eq!(
            Image::parse(&renamed).unwrap().redirects().unwrap_err(),
            VdsoError::NoSymbol { name: "__vdso_clock_gettime", version: VERSION }
        );
    }
}
