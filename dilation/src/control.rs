//! The control file: a 4 KiB file that the shim maps `MAP_SHARED`, through which the
//! harness changes a running node's TDF or steps its clock, and the shim reports errors.
//!
//! # Layout (little-endian, 8-byte fields)
//! | offset | field | writer |
//! |---|---|---|
//! | 0 | magic `DIORAMA1` | harness |
//! | 8 | layout version (1) | harness |
//! | 16 | seq: seqlock counter, odd while the harness writes | harness |
//! | 24 | TDF (f64 bits) | harness |
//! | 32 | epoch real ns (i64) | harness |
//! | 40 | epoch virtual ns (i64) | harness |
//! | 48 | total clock steps ns (i64; realtime only, monotonic clocks ignore them) | harness |
//! | 56 | errors counted by shims (u64, atomic add) | shims |
//! | 64 | processes that mapped the file (u64, atomic add) | shims |
//! | 72 | CPU ledger: real monotonic ns at which the node's CPU so far is paid (i64, CAS) | shims |
//!
//! # Design
//! Readers (the shim, on every clock call) must never lock or allocate, so parameters are
//! published with a seqlock: the writer makes `seq` odd, writes the fields, makes it even;
//! a reader retries while `seq` is odd or changed across its read. Each `pwrite` is a
//! syscall and thus a full barrier between the three steps. A TDF change moves the epoch to
//! "now", so virtual time stays continuous; a clock step moves the virtual epoch.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{realtime_ns, Epoch, TimeModel};

pub use dilation_abi::control::{
    MAGIC, OFF_ATTACHED, OFF_CPU_LEDGER, OFF_EPOCH_REAL, OFF_EPOCH_VIRT, OFF_ERRORS, OFF_MAGIC, OFF_SEQ, OFF_STEPS,
    OFF_TDF, OFF_VERSION, SIZE, VERSION,
};

/// Errors of the control file.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("access control file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a dilation control file")]
    NotControl { path: PathBuf },
    #[error("invalid TDF {0}")]
    BadTdf(f64),
    #[error("control file {path} is being written by someone else")]
    Busy { path: PathBuf },
}

/// What the shims of a node reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShimStats {
    /// Internal failures (each fell back to the real call).
    pub errors: u64,
    /// Processes that mapped the control file.
    pub attached: u64,
}

/// An open control file.
#[derive(Debug)]
pub struct ControlFile {
    file: File,
    path: PathBuf,
}

impl ControlFile {
    /// Creates (or truncates) a control file describing `model`.
    pub fn create(path: &Path, model: &TimeModel) -> Result<Self, ControlError> {
        let io = |source| ControlError::Io { path: path.to_owned(), source };
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).map_err(io)?;
        file.set_len(SIZE as u64).map_err(io)?;
        let cf = Self { file, path: path.to_owned() };
        cf.put(OFF_MAGIC, MAGIC)?;
        cf.put(OFF_VERSION, VERSION)?;
        cf.publish(model)?;
        Ok(cf)
    }

    /// Opens an existing control file.
    pub fn open(path: &Path) -> Result<Self, ControlError> {
        let io = |source| ControlError::Io { path: path.to_owned(), source };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
        let cf = Self { file, path: path.to_owned() };
        if cf.get(OFF_MAGIC)? != MAGIC {
            return Err(ControlError::NotControl { path: path.to_owned() });
        }
        Ok(cf)
    }

    fn put(&self, off: usize, v: u64) -> Result<(), ControlError> {
        self.file
            .write_all_at(&v.to_le_bytes(), off as u64)
            .map_err(|source| ControlError::Io { path: self.path.clone(), source })
    }

    fn get(&self, off: usize) -> Result<u64, ControlError> {
        let mut b = [0u8; 8];
        self.file
            .read_exact_at(&mut b, off as u64)
            .map_err(|source| ControlError::Io { path: self.path.clone(), source })?;
        Ok(u64::from_le_bytes(b))
    }

    /// Publishes `model` under the seqlock.
    fn publish(&self, model: &TimeModel) -> Result<(), ControlError> {
        let steps = self.get(OFF_STEPS)? as i64;
        self.publish_with_steps(model, steps)
    }

    fn publish_with_steps(&self, model: &TimeModel, steps: i64) -> Result<(), ControlError> {
        let seq = self.get(OFF_SEQ)?;
        let odd = seq | 1;
        self.put(OFF_SEQ, odd)?;
        let mut fields = [0u8; 32];
        fields[..8].copy_from_slice(&model.tdf.to_bits().to_le_bytes());
        fields[8..16].copy_from_slice(&model.epoch.real_ns.to_le_bytes());
        fields[16..24].copy_from_slice(&model.epoch.virt_ns.to_le_bytes());
        fields[24..].copy_from_slice(&steps.to_le_bytes());
        self.file
            .write_all_at(&fields, OFF_TDF as u64)
            .map_err(|source| ControlError::Io { path: self.path.clone(), source })?;
        self.put(OFF_SEQ, odd + 1)
    }

    /// The model currently published.
    pub fn model(&self) -> Result<TimeModel, ControlError> {
        for _ in 0..1000 {
            let s1 = self.get(OFF_SEQ)?;
            let tdf = f64::from_bits(self.get(OFF_TDF)?);
            let real_ns = self.get(OFF_EPOCH_REAL)? as i64;
            let virt_ns = self.get(OFF_EPOCH_VIRT)? as i64;
            if s1 % 2 == 0 && self.get(OFF_SEQ)? == s1 {
                return TimeModel::new(tdf, Epoch { real_ns, virt_ns }).map_err(|_| ControlError::BadTdf(tdf));
            }
            std::thread::yield_now();
        }
        Err(ControlError::Busy { path: self.path.clone() })
    }

    /// The seqlock counter (even when stable): a reader that caches [`ControlFile::state`]
    /// re-reads only when this changed.
    pub fn generation(&self) -> Result<u64, ControlError> {
        self.get(OFF_SEQ)
    }

    /// The model and the accumulated clock steps, read consistently under the seqlock.
    pub fn state(&self) -> Result<(TimeModel, i64), ControlError> {
        for _ in 0..1000 {
            let s1 = self.get(OFF_SEQ)?;
            let model = self.model()?;
            let steps = self.get(OFF_STEPS)? as i64;
            if s1 % 2 == 0 && self.get(OFF_SEQ)? == s1 {
                return Ok((model, steps));
            }
            std::thread::yield_now();
        }
        Err(ControlError::Busy { path: self.path.clone() })
    }

    /// Changes the TDF from now on, keeping virtual time continuous.
    pub fn set_tdf(&self, tdf: f64) -> Result<(), ControlError> {
        if !(tdf.is_finite() && tdf > 0.0) {
            return Err(ControlError::BadTdf(tdf));
        }
        let old = self.model()?;
        let now = realtime_ns();
        let epoch = Epoch { real_ns: now, virt_ns: old.virtual_ns(now) };
        self.publish(&TimeModel { tdf, epoch })
    }

    /// Steps the node's virtual wall clock by `offset_ns` (a clock fault; negative goes
    /// back). Monotonic clocks are not stepped: they may never go backwards.
    pub fn step(&self, offset_ns: i64) -> Result<(), ControlError> {
        let mut m = self.model()?;
        m.epoch.virt_ns += offset_ns;
        let steps = self.get(OFF_STEPS)? as i64 + offset_ns;
        self.publish_with_steps(&m, steps)
    }

    /// Errors and attachments reported by the shims.
    pub fn stats(&self) -> Result<ShimStats, ControlError> {
        Ok(ShimStats { errors: self.get(OFF_ERRORS)?, attached: self.get(OFF_ATTACHED)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_publish_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clock");
        let m = TimeModel::new(10.0, Epoch { real_ns: 100, virt_ns: 100 }).unwrap();
        let cf = ControlFile::create(&path, &m).unwrap();
        assert_eq!(cf.model().unwrap(), m);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE as u64);
        let again = ControlFile::open(&path).unwrap();
        assert_eq!(again.stats().unwrap(), ShimStats::default());
        assert_eq!(again.get(OFF_SEQ).unwrap() % 2, 0);
    }

    #[test]
    fn tdf_change_keeps_virtual_time_continuous() {
        let dir = tempfile::tempdir().unwrap();
        let start = Epoch::now();
        let cf = ControlFile::create(&dir.path().join("c"), &TimeModel::new(10.0, start).unwrap()).unwrap();
        let before = cf.model().unwrap();
        cf.set_tdf(2.0).unwrap();
        let after = cf.model().unwrap();
        assert_eq!(after.tdf, 2.0);
        let now = realtime_ns();
        // Both models agree at the switch-over instant, within scheduling noise.
        assert!((before.virtual_ns(after.epoch.real_ns) - after.epoch.virt_ns).abs() < 1_000);
        assert!(after.virtual_ns(now) >= after.epoch.virt_ns);
    }

    #[test]
    fn steps_move_virtual_time() {
        let dir = tempfile::tempdir().unwrap();
        let m = TimeModel::new(1.0, Epoch { real_ns: 0, virt_ns: 0 }).unwrap();
        let cf = ControlFile::create(&dir.path().join("c"), &m).unwrap();
        cf.step(-5_000_000_000).unwrap();
        assert_eq!(cf.model().unwrap().epoch.virt_ns, -5_000_000_000);
        assert_eq!(cf.get(OFF_STEPS).unwrap() as i64, -5_000_000_000);
        cf.set_tdf(2.0).unwrap();
        assert_eq!(cf.get(OFF_STEPS).unwrap() as i64, -5_000_000_000, "a TDF change keeps the steps");
        assert!(matches!(cf.set_tdf(0.0), Err(ControlError::BadTdf(_))));
    }

    #[test]
    fn other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, [0u8; 64]).unwrap();
        assert!(matches!(ControlFile::open(&p), Err(ControlError::NotControl { .. })));
    }
}
