//! Injecting the fast path into a freshly executed image, at its exec stop.
//!
//! # Design
//! 1. Find the vDSO (`AT_SYSINFO_EHDR` on the initial stack), read its image and parse it
//!    ([`crate::vdso`]): the three entries, their aliases, a `syscall` gadget.
//! 2. Through remote calls ([`crate::remote`]): map 3 pages right after the vDSO
//!    (`MAP_FIXED_NOREPLACE`; anywhere when that is taken), write the code and the data page
//!    ([`super::layout`]), map the node's control file `MAP_SHARED` over the third page
//!    (`openat` of the path written into the data page, `mmap`, `close`) or unmap it when
//!    there is none, and make the code `r-x` and the data `r--`.
//! 3. Rewrite `st_value` of every symbol entry of the three entries through
//!    `/proc/PID/mem` (the vDSO is read-only: the kernel's forced write copies the page for
//!    this process, as a debugger's breakpoint does), and read one back.
//!
//! Nobody has parsed the vDSO yet at the exec stop, so every later lookup (ld.so, static
//! glibc, the Go runtime) finds the injected functions. The code of the vDSO is never
//! changed. An error at any step leaves the symbols as they were, or some rewritten: the
//! caller then hides the vDSO, which makes either state unreachable.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use nix::unistd::Pid;

use super::layout::{Data, LayoutError, PAGE, PATH};
use super::sys;
use crate::memory::{Memory, ProcessMemory};
use crate::model::{self, Params};
use crate::remote::{Remote, RemoteError};
use crate::vdso::{self, Image, VdsoError};

/// What every injection of one tracer uses.
#[derive(Clone, Debug)]
pub struct Config {
    /// The environment's model (the code's fallback on a torn control page).
    pub initial: Params,
    /// `clock − CLOCK_REALTIME` per clock id, as the tracer sampled them.
    pub offsets: [i64; model::MAX_CLOCK + 1],
    /// Absolute path of the node's control file.
    pub control_path: Option<Vec<u8>>,
}

/// Where the fast path went in one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The process's vDSO mapping (its own calls into the kernel come from there).
    pub vdso: std::ops::Range<u64>,
    /// The first of the injected pages.
    pub code: u64,
}

/// Errors of an injection; every one but [`InjectError::Gone`] leaves a process that runs
/// on once its vDSO is hidden.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("find the vDSO in the auxiliary vector")]
    NoVdso,
    #[error("access the traced process's memory")]
    Memory(#[source] std::io::Error),
    #[error("read the vDSO")]
    Image(#[from] VdsoError),
    #[error("make a remote call")]
    Remote(#[source] RemoteError),
    #[error("remote {call} failed with errno {errno}")]
    Call { call: &'static str, errno: i64 },
    #[error("build the data page")]
    Layout(#[from] LayoutError),
    #[error("rewrite the vDSO's symbols")]
    Patch(#[source] std::io::Error),
    #[error("the traced process ended during the injection")]
    Gone(nix::sys::wait::WaitStatus),
}

impl From<RemoteError> for InjectError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::Gone(s) => Self::Gone(s),
            e => Self::Remote(e),
        }
    }
}

fn page_up(n: u64) -> u64 {
    n.div_ceil(PAGE as u64) * PAGE as u64
}

fn checked(call: &'static str, r: i64) -> Result<u64, InjectError> {
    if (-4095..0).contains(&r) {
        Err(InjectError::Call { call, errno: -r })
    } else {
        Ok(r as u64)
    }
}

/// Injects the fast path into `pid`, stopped at its exec stop with stack pointer `sp`.
pub fn inject(pid: Pid, sp: u64, cfg: &Config) -> Result<Injected, InjectError> {
    let mem = ProcessMemory(pid);
    let base = crate::auxv::vdso_base(&mem, sp).map_err(InjectError::Memory)?.ok_or(InjectError::NoVdso)?;
    let mut header = [0u8; 64];
    mem.read(base, &mut header).map_err(InjectError::Memory)?;
    let mut bytes = vec![0u8; vdso::image_len(&header)?];
    mem.read(base, &mut bytes).map_err(InjectError::Memory)?;
    let image = Image::parse(&bytes)?;
    let gadget = image.syscall_gadget()? as u64;
    let mut remote = Remote::new(pid, base + gadget)?;
    let placed = place(&mut remote, &mem, base, &image, bytes.len() as u64, cfg);
    if let Err(InjectError::Gone(s)) = placed {
        return Err(InjectError::Gone(s));
    }
    remote.finish()?;
    placed
}

fn place(
    remote: &mut Remote,
    mem: &ProcessMemory,
    base: u64,
    image: &Image<'_>,
    len: u64,
    cfg: &Config,
) -> Result<Injected, InjectError> {
    use libc::{
        SYS_close, SYS_mmap, SYS_mprotect, SYS_munmap, SYS_openat, AT_FDCWD, MAP_ANONYMOUS, MAP_FIXED,
        MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_EXEC, PROT_READ, PROT_WRITE,
    };
    let redirects = image.redirects()?;
    let end = base + page_up(len);
    let size = 3 * PAGE as u64;
    let rw = (PROT_READ | PROT_WRITE) as u64;
    let anon = (MAP_PRIVATE | MAP_ANONYMOUS) as u64;
    let none = u64::MAX; // fd −1
    let near = remote.call(SYS_mmap, [end, size, rw, anon | MAP_FIXED_NOREPLACE as u64, none, 0])?;
    let at = if near as u64 == end {
        end
    } else {
        if near >= 0 {
            // A kernel without MAP_FIXED_NOREPLACE treats it as a hint.
            checked("munmap", remote.call(SYS_munmap, [near as u64, size, 0, 0, 0, 0])?)?;
        }
        checked("mmap", remote.call(SYS_mmap, [0, size, rw, anon, none, 0])?)?
    };
    let code = sys::code();
    mem.write(at, code.bytes).map_err(InjectError::Memory)?;
    let control = at + 2 * PAGE as u64;
    let data_at = at + PAGE as u64;
    let data = Data {
        orig_clock_gettime: base.wrapping_add(image.address_of(redirects[0].value)),
        orig_gettimeofday: base.wrapping_add(image.address_of(redirects[1].value)),
        control: cfg.control_path.as_ref().map(|_| control),
        initial: cfg.initial,
        offsets: cfg.offsets,
        control_path: cfg.control_path.clone(),
    };
    mem.write(data_at, &data.bytes(data_at)?).map_err(InjectError::Memory)?;
    if cfg.control_path.is_some() {
        let fd = checked(
            "openat",
            remote.call(SYS_openat, [AT_FDCWD as u64, data_at + PATH as u64, (O_RDWR | O_CLOEXEC) as u64, 0, 0, 0])?,
        )?;
        let mapped = remote.call(SYS_mmap, [control, PAGE as u64, rw, (MAP_SHARED | MAP_FIXED) as u64, fd, 0])?;
        remote.call(SYS_close, [fd, 0, 0, 0, 0, 0])?;
        if checked("mmap", mapped)? != control {
            return Err(InjectError::Call { call: "mmap", errno: 0 });
        }
    } else {
        checked("munmap", remote.call(SYS_munmap, [control, PAGE as u64, 0, 0, 0, 0])?)?;
    }
    checked("mprotect", remote.call(SYS_mprotect, [at, PAGE as u64, (PROT_READ | PROT_EXEC) as u64, 0, 0, 0])?)?;
    checked("mprotect", remote.call(SYS_mprotect, [data_at, PAGE as u64, PROT_READ as u64, 0, 0, 0])?)?;

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{}/mem", remote_pid(mem)))
        .map_err(InjectError::Patch)?;
    let entries = [code.clock_gettime, code.gettimeofday, code.time];
    for (r, entry) in redirects.iter().zip(entries) {
        let value = image.value_for((at + entry as u64).wrapping_sub(base));
        for &s in &r.symbols {
            file.write_all_at(&value.to_le_bytes(), base + vdso::st_value_offset(s) as u64)
                .map_err(InjectError::Patch)?;
        }
        let mut back = [0u8; 8];
        file.read_exact_at(&mut back, base + vdso::st_value_offset(r.symbols[0]) as u64).map_err(InjectError::Patch)?;
        if u64::from_le_bytes(back) != value {
            return Err(InjectError::Patch(std::io::Error::other("the rewritten symbol did not read back")));
        }
    }
    Ok(Injected { vdso: base..end, code: at })
}

fn remote_pid(mem: &ProcessMemory) -> i32 {
    mem.0.as_raw()
}
