//! The dilated CUBIC (`src/bpf/dcubic.bpf.c`) registered as a kernel congestion control.
//!
//! CUBIC's window is a function of time since the last reduction. On a node whose clock is
//! slowed by the TDF, the kernel's CUBIC sees real time and grows the window TDF times too
//! fast in the node's virtual time; this one converts every span to virtual time first.
//!
//! # Design
//! One registration per TDF per process, named after the TDF (`cubic_d10`), held by a
//! struct_ops BPF link: dropping [`DilatedCubic`] or the death of its process (even by
//! SIGKILL) unregisters it, so a crashed run leaves no congestion control behind. Sockets
//! still using it keep it alive until they close. The ops carry `TCP_CONG_NON_RESTRICTED`,
//! so it can become the default of a non-initial network namespace
//! (`net.ipv4.tcp_congestion_control` there) without touching the host's global
//! `tcp_allowed_congestion_control`. When another process holds the name, a suffix is added
//! (`cubic_d10.1`).

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, Link};

use crate::skel::dcubic::DcubicSkelBuilder;
use crate::{scale, Error};

/// Names tried before giving up on a taken one.
const NAME_ATTEMPTS: u32 = 8;

/// A registered dilated CUBIC.
pub struct DilatedCubic {
    _link: Link,
    name: String,
    tdf: f64,
}

impl std::fmt::Debug for DilatedCubic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DilatedCubic").field("name", &self.name).field("tdf", &self.tdf).finish_non_exhaustive()
    }
}

impl DilatedCubic {
    /// Loads and registers the dilated CUBIC for `tdf`.
    pub fn register(tdf: f64) -> Result<Self, Error> {
        let milli = scale::tdf_milli(tdf)?;
        for attempt in 0..NAME_ATTEMPTS {
            let name = scale::cubic_name(tdf, attempt);
            match register_as(&name, milli) {
                Ok(link) => return Ok(Self { _link: link, name, tdf }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::Bpf("register the dilated CUBIC", e)),
            }
        }
        Err(Error::NamesTaken(scale::cubic_name(tdf, 0), NAME_ATTEMPTS))
    }

    /// The name the kernel knows it by (what `ss -i` and `TCP_CONGESTION` show).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tdf(&self) -> f64 {
        self.tdf
    }
}

fn register_as(name: &str, milli: u32) -> Result<Link, libbpf_rs::Error> {
    let mut storage = MaybeUninit::uninit();
    let mut open = DcubicSkelBuilder::default().open(&mut storage)?;
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        rodata.tdf_milli = milli;
    }
    let ops = open.struct_ops.dcubic_mut();
    ops.name = [0; 16];
    for (slot, byte) in ops.name.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte as i8;
    }
    let mut skel = open.load()?;
    skel.maps.dcubic.attach_struct_ops()
}
