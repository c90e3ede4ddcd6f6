//! The sock_ops program on a node's cgroup2 directory (`src/bpf/sockclock.bpf.c`).
//!
//! It answers `BPF_SOCK_OPS_TIMEOUT_INIT` with TDF seconds, so the node's SYN and SYN-ACK
//! retransmission timer (1 s on real time) keeps its value as the node perceives it, and it
//! asks for the delayed-ACK maximum and minimum RTO stretched by the TDF, counting what the
//! kernel accepted ([`Outcomes`]).
//!
//! # Design
//! One load per node: the attachment is a BPF link on the node's directory, owned by
//! [`SockClock`]. Dropping it, or the death of the process holding it (even by SIGKILL),
//! detaches the program; no pinned object is left behind.
//!
//! # Limitations
//! The kernel accepts `TCP_BPF_DELACK_MAX` and `TCP_BPF_RTO_MIN` only at or below 200 ms:
//! they can shorten these timers, not stretch them, so at TDF > 1 they are refused (counted
//! in [`Outcomes::delack_max_refused`] / [`Outcomes::rto_min_refused`]). The minimum RTO is
//! then left to the namespace's `tcp_rto_min_us` sysctl.

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle};
use serde::Serialize;

use crate::skel::sockclock::SockclockSkelBuilder;
use crate::{scale, Error};

/// How often each hook acted, summed over the node's sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub timeout_init_answered: u64,
    pub delack_max_set: u64,
    pub delack_max_refused: u64,
    pub rto_min_set: u64,
    pub rto_min_refused: u64,
    pub cc_set: u64,
    pub cc_refused: u64,
    /// The errno of the last refused switch, 0 if none.
    pub cc_last_errno: u64,
}

/// The program attached to one node's cgroup2 directory.
pub struct SockClock {
    _link: Link,
    outcomes: MapHandle,
    hz: u32,
}

impl std::fmt::Debug for SockClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SockClock").field("hz", &self.hz).finish_non_exhaustive()
    }
}

impl SockClock {
    /// Loads the program for `tdf` and attaches it to the cgroup2 directory `cgroup`.
    pub fn attach(cgroup: &Path, tdf: f64) -> Result<Self, Error> {
        Self::attach_with_cc(cgroup, tdf, None)
    }

    /// As [`Self::attach`], and switches every socket of the cgroup to congestion control
    /// `cc` (for processes whose namespace default cannot be set; at most 15 bytes).
    pub fn attach_with_cc(cgroup: &Path, tdf: f64, cc: Option<&str>) -> Result<Self, Error> {
        let milli = scale::tdf_milli(tdf)?;
        let mut storage = MaybeUninit::uninit();
        let mut open =
            SockclockSkelBuilder::default().open(&mut storage).map_err(|e| Error::Bpf("open sock_ops object", e))?;
        if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
            rodata.tdf_milli = milli;
            if let Some(cc) = cc {
                for (slot, byte) in rodata.cc_name.iter_mut().zip(cc.bytes().take(15)) {
                    *slot = byte as i8;
                }
            }
        }
        let skel = open.load().map_err(|e| Error::Bpf("load sock_ops program", e))?;
        let hz = skel.maps.kconfig_data.map_or(0, |k| k.CONFIG_HZ);
        let dir = File::open(cgroup).map_err(|e| Error::Io(cgroup.to_path_buf(), e))?;
        let link = skel
            .progs
            .sock_clock
            .attach_cgroup(dir.as_raw_fd())
            .map_err(|e| Error::Bpf("attach sock_ops program to the cgroup", e))?;
        let outcomes = MapHandle::try_from(&skel.maps.outcomes).map_err(|e| Error::Bpf("keep the outcomes map", e))?;
        Ok(Self { _link: link, outcomes, hz })
    }

    /// The kernel's tick rate as libbpf found it; 0 means unknown, and then the initial RTO
    /// is not answered.
    pub fn hz(&self) -> u32 {
        self.hz
    }

    pub fn outcomes(&self) -> Result<Outcomes, Error> {
        let slot = |i: u32| -> Result<u64, Error> {
            let value = self
                .outcomes
                .lookup(&i.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| Error::Bpf("read the outcomes map", e))?;
            Ok(value.and_then(|v| v.get(..8).and_then(|b| b.try_into().ok())).map_or(0, u64::from_ne_bytes))
        };
        Ok(Outcomes {
            timeout_init_answered: slot(0)?,
            delack_max_set: slot(1)?,
            delack_max_refused: slot(2)?,
            rto_min_set: slot(3)?,
            rto_min_refused: slot(4)?,
            cc_set: slot(5)?,
            cc_refused: slot(6)?,
            cc_last_errno: slot(7)?,
        })
    }
}
