//! A small synchronous rtnetlink client (links, addresses, routes, queueing disciplines and
//! classes), built on `netlink-packet-route` messages and a `netlink-sys` socket.
//!
//! # Design
//! A socket belongs to the network namespace it was opened in, whatever thread later uses
//! it: [`Rtnl::open_in`] opens one inside a namespace held by descriptor, so the kernel
//! backend configures every namespace from the harness's own thread without `setns`.
//! Requests are acknowledged one at a time (`NLM_F_ACK`); the kernel's error code is
//! returned with the operation's name. `tc` options that `netlink-packet-route` does not
//! model (netem, htb, fifo) are emitted as raw `TCA_OPTIONS` bytes built by
//! [`crate::kernel`].

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcStats2};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{constants::NETLINK_ROUTE, Socket, SocketAddr};

use crate::netns::NetNs;

/// Errors of rtnetlink requests.
#[derive(Debug, thiserror::Error)]
pub enum RtnlError {
    #[error("netlink socket")]
    Io(#[from] io::Error),
    #[error("{op}: {source}")]
    Kernel {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: undecodable netlink reply: {detail}")]
    Decode { op: String, detail: String },
}

impl RtnlError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RtnlError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// An rtnetlink socket in one network namespace.
#[derive(Debug)]
pub struct Rtnl {
    sock: Socket,
    /// Interior sequence counter: requests are made through `&self` (counters are read
    /// from `Emulator::samples(&self)`).
    seq: std::cell::Cell<u32>,
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const IFLA_STATS64: u16 = 23;

fn u32_le(b: &[u8]) -> u32 {
    b.get(..4).map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_le(b: &[u8], i: usize) -> u64 {
    b.get(i * 8..i * 8 + 8).map_or(0, |s| u64::from_ne_bytes(s.try_into().unwrap_or([0; 8])))
}

/// The value of the first attribute of type `kind` in a run of attributes.
fn raw_attr(mut b: &[u8], kind: u16) -> Option<&[u8]> {
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        if len < 4 || len > b.len() {
            return None;
        }
        if u16::from_ne_bytes([b[2], b[3]]) & 0x3fff == kind {
            return Some(&b[4..len]);
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    None
}

/// `TC_H_ROOT`.
pub const ROOT: TcHandle = TcHandle::ROOT;

/// Counters of one device: transmitted bytes and packets (link statistics) and the root
/// queueing discipline's drops and backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevCounters {
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub drops: u64,
    pub backlog: u64,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Self { sock, seq: std::cell::Cell::new(0) })
    }

    /// Opens a socket inside `ns`.
    pub fn open_in(ns: &NetNs) -> io::Result<Self> {
        ns.run_in(Self::open)
    }

    /// Sends one request and collects the replies until the acknowledgement (or, for a
    /// dump, the end marker).
    fn exchange(&self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<Vec<u8>>, RtnlError> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.header.length as usize];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            let mut at = 0;
            // Replies are walked by hand: link replies are kept raw, because
            // netlink-packet-route warns on every attribute newer than itself.
            while at + 16 <= data.len() {
                let len = u32_le(&data[at..]) as usize;
                if len < 16 || at + len > data.len() {
                    return Err(RtnlError::Decode { op: op.to_owned(), detail: format!("bad message length {len}") });
                }
                let msg = &data[at..at + len];
                at += (len + 3) & !3;
                let kind = u16::from_ne_bytes([msg[4], msg[5]]);
                if u32_le(&msg[8..]) != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = msg.get(16..20).map_or(0, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                        return if code == 0 {
                            Ok(out)
                        } else {
                            Err(RtnlError::Kernel { op: op.to_owned(), source: io::Error::from_raw_os_error(-code) })
                        };
                    }
                    _ => out.push(msg.to_vec()),
                }
            }
        }
    }

    /// Creates a veth pair with the kernel's default offloads (a benchmark's baseline).
    pub fn add_veth_plain(&self, name: &str, peer: &str, peer_ns: RawFd) -> Result<(), RtnlError> {
        self.veth(name, peer, peer_ns, false)
    }

    /// Creates a veth pair: `name` here, `peer` in the namespace of `peer_ns`.
    pub fn add_veth(&self, name: &str, peer: &str, peer_ns: RawFd) -> Result<(), RtnlError> {
        self.veth(name, peer, peer_ns, true)
    }

    fn veth(&self, name: &str, peer: &str, peer_ns: RawFd, single_segment: bool) -> Result<(), RtnlError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(peer_ns));
        // One segment per packet: shapers and queue limits then see wire-sized packets,
        // not 64 KB GSO bursts that a byte limit would drop whole.
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        if single_segment {
            peer_msg.attributes.push(LinkAttribute::GsoMaxSegs(1));
            msg.attributes.push(LinkAttribute::GsoMaxSegs(1));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.exchange(
            &format!("create veth {name}/{peer}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// The index of interface `name`.
    pub fn index(&self, name: &str) -> Result<u32, RtnlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let op = format!("look up interface {name}");
        let replies = self.exchange(&op, RouteNetlinkMessage::GetLink(msg), 0)?;
        replies
            .iter()
            .find(|m| u16::from_ne_bytes([m[4], m[5]]) == RTM_NEWLINK && m.len() >= 32)
            .map(|m| u32_le(&m[20..]))
            .ok_or(RtnlError::Decode { op, detail: "no link in the reply".into() })
    }

    /// Sets an interface up or down.
    pub fn set_up(&self, index: u32, up: bool) -> Result<(), RtnlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        msg.header.change_mask = LinkFlags::Up;
        self.exchange(
            &format!("set interface {index} {}", if up { "up" } else { "down" }),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )?;
        Ok(())
    }

    /// Adds an IPv4 address.
    pub fn add_address(&self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<(), RtnlError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.into()));
        msg.attributes.push(AddressAttribute::Address(addr.into()));
        self.exchange(
            &format!("add address {addr}/{prefix_len}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Adds or replaces a route to `dst/len`: out of `oif` without a gateway (the far end
    /// answers ARP for it, or proxies), or a blackhole when `oif` is `None`.
    pub fn replace_route(
        &self,
        dst: Ipv4Addr,
        len: u8,
        oif: Option<u32>,
        rto_min_ms: Option<u32>,
    ) -> Result<(), RtnlError> {
        let msg = route_message(dst, len, oif, rto_min_ms);
        self.exchange(
            &format!("replace route {dst}/{len}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Deletes a route to `dst/len` (any type). A missing route is not an error.
    pub fn delete_route(&self, dst: Ipv4Addr, len: u8, blackhole: bool) -> Result<(), RtnlError> {
        let mut msg = route_message(dst, len, None, None);
        if !blackhole {
            msg.header.kind = RouteType::Unicast;
        }
        match self.exchange(&format!("delete route {dst}/{len}"), RouteNetlinkMessage::DelRoute(msg), 0) {
            Err(e) if e.errno() == Some(libc::ESRCH) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Adds (or replaces) a queueing discipline with raw `TCA_OPTIONS`.
    pub fn replace_qdisc(
        &self,
        index: u32,
        parent: TcHandle,
        handle: TcHandle,
        kind: &str,
        options: Vec<u8>,
    ) -> Result<(), RtnlError> {
        let msg = tc_message(index, parent, handle, kind, options);
        self.exchange(
            &format!("add {kind} qdisc on interface {index}"),
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Deletes the root queueing discipline (and so its children). None there is fine.
    pub fn delete_root_qdisc(&self, index: u32) -> Result<(), RtnlError> {
        let mut msg = TcMessage::default();
        msg.header.index = index as i32;
        msg.header.parent = ROOT;
        match self.exchange(
            &format!("delete root qdisc of interface {index}"),
            RouteNetlinkMessage::DelQueueDiscipline(msg),
            0,
        ) {
            Err(e) if matches!(e.errno(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Adds (or replaces) a traffic class with raw `TCA_OPTIONS`.
    pub fn replace_class(
        &self,
        index: u32,
        parent: TcHandle,
        classid: TcHandle,
        kind: &str,
        options: Vec<u8>,
    ) -> Result<(), RtnlError> {
        let msg = tc_message(index, parent, classid, kind, options);
        self.exchange(
            &format!("add {kind} class on interface {index}"),
            RouteNetlinkMessage::NewTrafficClass(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Counters of every interface of this namespace, by index.
    pub fn counters(&self) -> Result<std::collections::HashMap<u32, DevCounters>, RtnlError> {
        let mut out: std::collections::HashMap<u32, DevCounters> = std::collections::HashMap::new();
        for m in self.exchange("dump links", RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)? {
            if u16::from_ne_bytes([m[4], m[5]]) != RTM_NEWLINK || m.len() < 32 {
                continue;
            }
            let c = out.entry(u32_le(&m[20..])).or_default();
            // struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes, ...
            if let Some(stats) = raw_attr(&m[32..], IFLA_STATS64) {
                c.tx_packets = u64_le(stats, 1);
                c.tx_bytes = u64_le(stats, 3);
            }
        }
        for raw in
            self.exchange("dump qdiscs", RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()), NLM_F_DUMP)?
        {
            let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw) else { continue };
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewQueueDiscipline(q)) = m.payload {
                if q.header.parent != ROOT {
                    continue;
                }
                let Ok(index) = u32::try_from(q.header.index) else { continue };
                let c = out.entry(index).or_default();
                for a in &q.attributes {
                    match a {
                        TcAttribute::Stats2(stats) => {
                            for s in stats {
                                if let TcStats2::Queue(qs) = s {
                                    c.drops = u64::from(qs.drops);
                                    c.backlog = u64::from(qs.backlog);
                                }
                            }
                        }
                        TcAttribute::Stats(s) if c.drops == 0 => {
                            c.drops = u64::from(s.drops);
                            c.backlog = u64::from(s.backlog);
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(out)
    }
}

impl AsRawFd for Rtnl {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// A route message: unicast out of `oif` with link scope, or a blackhole.
pub fn route_message(dst: Ipv4Addr, len: u8, oif: Option<u32>, rto_min_ms: Option<u32>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = len;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    match oif {
        Some(oif) => {
            msg.header.scope = RouteScope::Link;
            msg.header.kind = RouteType::Unicast;
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        None => {
            msg.header.scope = RouteScope::Universe;
            msg.header.kind = RouteType::BlackHole;
        }
    }
    msg.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    if let Some(ms) = rto_min_ms {
        msg.attributes.push(RouteAttribute::Metrics(vec![RouteMetric::RtoMin(ms)]));
    }
    msg
}

/// A tc message with a kind and raw options.
pub fn tc_message(index: u32, parent: TcHandle, handle: TcHandle, kind: &str, options: Vec<u8>) -> TcMessage {
    let mut msg = TcMessage::default();
    msg.header.index = index as i32;
    msg.header.parent = parent;
    msg.header.handle = handle;
    msg.attributes.push(TcAttribute::Kind(kind.to_owned()));
    if !options.is_empty() {
        // TCA_OPTIONS (2) with the discipline's own layout.
        msg.attributes.push(TcAttribute::Other(netlink_packet_utils::nla::DefaultNla::new(2, options)));
    }
    msg
}

/// Emits a request as the bytes sent to the kernel (for tests that parse it back).
pub fn encode(msg: RouteNetlinkMessage) -> Vec<u8> {
    let mut nl = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let mut buf = vec![0u8; nl.header.length as usize];
    nl.serialize(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blackhole_route_parses_back() {
        let bytes = encode(RouteNetlinkMessage::NewRoute(route_message(Ipv4Addr::new(10, 77, 0, 3), 32, None, None)));
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) = back.payload else { panic!("{back:?}") };
        assert_eq!(r.header.kind, RouteType::BlackHole);
        assert_eq!(r.header.destination_prefix_length, 32);
        assert!(r.attributes.contains(&RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(10, 77, 0, 3)))));
    }

    #[test]
    fn a_route_with_rto_min_parses_back() {
        let bytes =
            encode(RouteNetlinkMessage::NewRoute(route_message(Ipv4Addr::new(10, 77, 0, 0), 16, Some(7), Some(2000))));
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) = back.payload else { panic!("{back:?}") };
        assert!(r.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(r.attributes.contains(&RouteAttribute::Metrics(vec![RouteMetric::RtoMin(2000)])));
    }
}
