//! The netem crate's FFI: TUN creation and interface configuration ioctls.
//! Every `unsafe` block has a `// SAFETY:` note; nothing else in the crate is unsafe.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

fn ifreq(name: &CStr) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.to_bytes_with_nul();
    if bytes.len() > req.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens a TUN device named `name` (layer 3, no packet information header, a virtio-net
/// header before every packet), non-blocking. Must run in the network namespace the device
/// belongs to.
pub(crate) fn open_tun(name: &CStr) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open("/dev/net/tun")?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes an ifreq; `req` is a valid, initialized ifreq and
    // `file` an open /dev/net/tun descriptor.
    check(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
    Ok(file)
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(fd)?;
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(addr).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; this is how the
    // SIOCSIF* ioctls expect an IPv4 address.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Sets an interface's IPv4 address and netmask, MTU, and brings it (and `lo`) up, in the
/// current network namespace.
pub(crate) fn configure(name: &CStr, addr: Ipv4Addr, prefix_len: u8, mtu: u32) -> io::Result<()> {
    let sock = socket()?;
    let fd = sock.as_raw_fd();
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr(addr);
    // SAFETY: SIOCSIFADDR reads an ifreq holding an AF_INET address.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFADDR, &req) })?;
    let mask = if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len.min(32))) };
    req.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    // SAFETY: SIOCSIFNETMASK reads an ifreq holding an AF_INET mask.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFNETMASK, &req) })?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    // SAFETY: SIOCSIFMTU reads an ifreq holding the MTU.
    check(unsafe { libc::ioctl(fd, libc::SIOCSIFMTU, &req) })?;
    for ifname in [name, c"lo"] {
        let mut r = ifreq(ifname)?;
        // SAFETY: SIOCGIFFLAGS fills the flags of a valid ifreq.
        check(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut r) })?;
        // SAFETY: ifru_flags is the union member SIOCGIFFLAGS filled.
        unsafe { r.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: SIOCSIFFLAGS reads the updated flags.
        check(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &r) })?;
    }
    Ok(())
}

/// `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6` (include/uapi/linux/if_tun.h).
const TUN_OFFLOADS: libc::c_ulong = 0x01 | 0x02 | 0x04;

/// Lets the kernel hand this TUN device checksum-offloaded TSO packets (up to 64 KB) or
/// makes it segment and checksum them first.
pub(crate) fn set_offload(tun: &File, on: bool) -> io::Result<()> {
    let flags: libc::c_ulong = if on { TUN_OFFLOADS } else { 0 };
    // SAFETY: TUNSETOFFLOAD takes its flags by value; `tun` is an open TUN descriptor.
    check(unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETOFFLOAD, flags) })
}

/// Gives the calling thread real-time priority `prio` (SCHED_FIFO): the emulator's
/// forwarding thread must run when its packets are due, not when the host's busy
/// processes let it. The kernel's RT throttling (95% by default) still bounds it.
pub(crate) fn realtime(prio: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: prio };
    // SAFETY: sched_setscheduler with pid 0 (this thread) reads a valid sched_param.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) })
}
