//! Creating a node's TUN device inside its network namespace.
//!
//! Every packet read from or written to a device starts with a 10-byte `virtio_net_hdr`
//! ([`VNET_HDR_LEN`]): with offloads on ([`set_offload`]) the kernel hands the core TCP
//! segments of up to 64 KB (TSO, partial checksums) that the receiving stack accepts whole,
//! so bulk TCP costs one read and one write per 64 KB instead of per 1,500 bytes.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;

use crate::netns::NetNs;

/// Creates TUN device `name` in `ns` with `addr/prefix_len` and `mtu`, up, and `lo` up.
/// The returned descriptor works from any thread.
pub fn create_in(ns: &NetNs, name: &str, addr: Ipv4Addr, prefix_len: u8, mtu: u32) -> io::Result<File> {
    let cname =
        CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    ns.run_in(move || {
        let tun = crate::sys::open_tun(&cname)?;
        crate::sys::configure(&cname, addr, prefix_len, mtu)?;
        Ok(tun)
    })
}

/// Length of the `virtio_net_hdr` before every packet.
pub const VNET_HDR_LEN: usize = 10;

/// Turns TSO/checksum offloads of a device on or off.
pub fn set_offload(tun: &File, on: bool) -> io::Result<()> {
    crate::sys::set_offload(tun, on)
}
