//! Creating a node's TUN device inside its network namespace.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;

use crate::netns::NetNs;

/// Creates TUN device `name` in `ns` with `addr/prefix_len` and `mtu`, up, and `lo` up.
/// The returned descriptor works from any thread.
pub fn create_in(ns: &NetNs, name: &str, addr: Ipv4Addr, prefix_len: u8, mtu: u32) -> io::Result<File> {
    let cname = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    ns.run_in(move || {
        let tun = crate::sys::open_tun(&cname)?;
        crate::sys::configure(&cname, addr, prefix_len, mtu)?;
        Ok(tun)
    })
}
