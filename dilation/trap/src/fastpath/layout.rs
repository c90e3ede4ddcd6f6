//! The data page the injected code reads, one page after its first byte.
//!
//! | offset | field |
//! |---|---|
//! | 0 | address of the original `__vdso_clock_gettime` |
//! | 8 | address of the original `__vdso_gettimeofday` |
//! | 16 | address of the control page to read (the node's, shared; else [`FIXED`]) |
//! | 24 | `d0 = ev₀ − er₀` of the initial epoch (i64) |
//! | 32 | `off_c` for clock ids 0..=11 (i64 each) |
//! | 128 | kind of clock ids 0..=11 (u8: 0 pass through, 1 realtime family, 2 steady) |
//! | 256 | [`FIXED`]: the start-up parameters in the control page's layout (seq 0) |
//! | 2048 | the control file's path, NUL-terminated (for the remote `openat`) |
//!
//! # Invariants
//! Written once by the tracer before the page is made read-only and before any symbol
//! points at the code; never changed afterwards. TDF changes and clock steps reach the
//! code through the control page, never through this page.

use dilation::control::{OFF_EPOCH_REAL, OFF_EPOCH_VIRT, OFF_SEQ, OFF_STEPS, OFF_TDF};

use crate::model::{self, Kind, Params};

/// Page size (x86_64).
pub const PAGE: usize = 4096;
pub const ORIG_CLOCK_GETTIME: usize = 0;
pub const ORIG_GETTIMEOFDAY: usize = 8;
pub const CONTROL: usize = 16;
pub const D0: usize = 24;
pub const OFFSETS: usize = 32;
pub const KINDS: usize = 128;
pub const FIXED: usize = 256;
pub const PATH: usize = 2048;
/// Longest control path that fits.
pub const MAX_PATH: usize = PAGE - PATH - 1;

/// What the data page holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    pub orig_clock_gettime: u64,
    pub orig_gettimeofday: u64,
    /// Where the node's control page is mapped in the target; `None`: read [`FIXED`].
    pub control: Option<u64>,
    /// Start-up parameters (the environment's model; `steps` 0).
    pub initial: Params,
    pub offsets: [i64; model::MAX_CLOCK + 1],
    pub control_path: Option<Vec<u8>>,
}

/// Errors of building the page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("fit control path of {0} bytes in the data page")]
    PathTooLong(usize),
    #[error("use control path with a NUL byte")]
    Nul,
}

fn put(page: &mut [u8], off: usize, v: u64) {
    page[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

impl Data {
    /// The page's bytes, for a data page mapped at `at`.
    pub fn bytes(&self, at: u64) -> Result<Vec<u8>, LayoutError> {
        let mut page = vec![0u8; PAGE];
        put(&mut page, ORIG_CLOCK_GETTIME, self.orig_clock_gettime);
        put(&mut page, ORIG_GETTIMEOFDAY, self.orig_gettimeofday);
        put(&mut page, CONTROL, self.control.unwrap_or(at + FIXED as u64));
        put(&mut page, D0, self.initial.d0 as u64);
        for (id, off) in self.offsets.iter().enumerate() {
            put(&mut page, OFFSETS + 8 * id, *off as u64);
            page[KINDS + id] = match model::kind(id as i32) {
                Kind::Passthrough => 0,
                Kind::Realtime => 1,
                Kind::Steady => 2,
            };
        }
        put(&mut page, FIXED + OFF_SEQ, 0);
        put(&mut page, FIXED + OFF_TDF, self.initial.tdf.to_bits());
        put(&mut page, FIXED + OFF_EPOCH_REAL, self.initial.epoch_real as u64);
        put(&mut page, FIXED + OFF_EPOCH_VIRT, self.initial.epoch_virt as u64);
        put(&mut page, FIXED + OFF_STEPS, self.initial.steps as u64);
        if let Some(p) = &self.control_path {
            if p.len() > MAX_PATH {
                return Err(LayoutError::PathTooLong(p.len()));
            }
            if p.contains(&0) {
                return Err(LayoutError::Nul);
            }
            page[PATH..PATH + p.len()].copy_from_slice(p);
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dilation::control::OFF_ERRORS;

    #[test]
    fn the_fixed_block_has_the_control_page_layout_within_its_slot() {
        // The code reads FIXED + OFF_* and may add to FIXED + OFF_ERRORS.
        const { assert!(FIXED + OFF_ERRORS + 8 <= PATH) };
        const { assert!(KINDS + model::MAX_CLOCK < FIXED) };
        assert_eq!(OFFSETS + 8 * (model::MAX_CLOCK + 1), KINDS);
        // The code's constants (`[r10 + 16]`, `[r10 + 24]`…) are the ABI's.
        assert_eq!((OFF_SEQ, OFF_TDF, OFF_EPOCH_REAL, OFF_EPOCH_VIRT, OFF_STEPS, OFF_ERRORS), (16, 24, 32, 40, 48, 56));
    }

    #[test]
    fn kinds_follow_the_model_and_paths_are_checked() {
        let d = Data {
            orig_clock_gettime: 1,
            orig_gettimeofday: 2,
            control: None,
            initial: Params { tdf: 10.0, mult: model::mult_of(10.0), epoch_real: 5, epoch_virt: 6, steps: 0, d0: 1 },
            offsets: [0; model::MAX_CLOCK + 1],
            control_path: Some(b"/run/x/control".to_vec()),
        };
        let page = d.bytes(0x7000).unwrap();
        assert_eq!(u64::from_le_bytes(page[CONTROL..CONTROL + 8].try_into().unwrap()), 0x7000 + FIXED as u64);
        assert_eq!(&page[KINDS..KINDS + 12], &[1, 2, 0, 0, 2, 1, 2, 2, 1, 2, 0, 2]);
        assert_eq!(&page[PATH..PATH + 15], b"/run/x/control\0");
        let long = Data { control_path: Some(vec![b'a'; MAX_PATH + 1]), ..d.clone() };
        assert_eq!(long.bytes(0).unwrap_err(), LayoutError::PathTooLong(MAX_PATH + 1));
        let nul = Data { control_path: Some(b"a\0b".to_vec()), ..d };
        assert_eq!(nul.bytes(0).unwrap_err(), LayoutError::Nul);
    }
}
