//! The address rule of the emulated network, in one place: the topology's `network.prefix`
//! (default `10.77.0.0/16`), and node *i* in declaration order gets `network + 1 + i`
//! (`.1`, `.2`, …: deterministic, like Mininet's h1, h2). The emulator assigns the
//! addresses with it (`netemu::graph`), the harness parses the prefix with it, and the
//! catalog uses it to refuse a balancer VIP that is a node's address without depending on
//! the emulator.

use std::net::Ipv4Addr;

/// The prefix when a topology names none.
pub const DEFAULT_PREFIX: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 77, 0, 0), 16);

/// The longest prefix accepted: a /30 still holds two nodes.
pub const MAX_PREFIX_LEN: u8 = 30;

/// A `network.prefix` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix {0:?}: expected a.b.c.d/len")]
    Shape(String),
    #[error("prefix {0:?}: {1:?} is not an IPv4 address")]
    Address(String, String),
    #[error("prefix {0:?}: length must be 0..={MAX_PREFIX_LEN}")]
    Length(String),
}

/// Parses `a.b.c.d/len`; `None` is [`DEFAULT_PREFIX`].
pub fn parse_prefix(prefix: Option<&str>) -> Result<(Ipv4Addr, u8), PrefixError> {
    let Some(p) = prefix else { return Ok(DEFAULT_PREFIX) };
    let (a, l) = p.split_once('/').ok_or_else(|| PrefixError::Shape(p.to_owned()))?;
    let addr = a.parse().map_err(|_| PrefixError::Address(p.to_owned(), a.to_owned()))?;
    let len = l.parse().ok().filter(|l| *l <= MAX_PREFIX_LEN).ok_or_else(|| PrefixError::Length(p.to_owned()))?;
    Ok((addr, len))
}

/// The network address of `prefix/len` (host bits cleared).
pub fn network(prefix: Ipv4Addr, len: u8) -> u32 {
    u32::from(prefix) & u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0)
}

/// How many node addresses `/len` holds (the network and broadcast addresses excluded).
pub fn room(len: u8) -> u64 {
    (1u64 << (32 - u32::from(len.min(32)))).saturating_sub(2)
}

/// The address of the `index`-th node (0-based, declaration order); `None` past the
/// prefix's [`room`].
pub fn node_address(prefix: Ipv4Addr, len: u8, index: usize) -> Option<Ipv4Addr> {
    let i = u32::try_from(index).ok().filter(|&i| u64::from(i) < room(len))?;
    Some(Ipv4Addr::from(network(prefix, len) + 1 + i))
}

/// The address of switch `index`: switches count down from the last address below the
/// broadcast, nodes up from the network's first, so the two never meet within [`room`].
pub fn switch_address(prefix: Ipv4Addr, len: u8, index: usize) -> Option<Ipv4Addr> {
    let j = u32::try_from(index).ok().filter(|&j| u64::from(j) < room(len))?;
    let top = network(prefix, len) + u32::try_from(room(len)).ok()?;
    Some(Ipv4Addr::from(top - j))
}

/// The node index of `addr` under the rule (whether such a node exists is the caller's).
pub fn node_index(prefix: Ipv4Addr, len: u8, addr: Ipv4Addr) -> Option<usize> {
    let i = u32::from(addr).checked_sub(network(prefix, len) + 1)?;
    usize::try_from(i).ok().filter(|&i| (i as u64) < room(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_consecutive_addresses_after_the_network() {
        let (p, l) = DEFAULT_PREFIX;
        assert_eq!(node_address(p, l, 0), Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(node_address(p, l, 1), Some(Ipv4Addr::new(10, 77, 0, 2)));
        assert_eq!(node_address(Ipv4Addr::new(192, 168, 4, 9), 24, 1), Some(Ipv4Addr::new(192, 168, 4, 2)));
        assert_eq!(node_index(p, l, Ipv4Addr::new(10, 77, 0, 2)), Some(1));
        assert_eq!(node_index(p, l, Ipv4Addr::new(10, 77, 0, 0)), None);
        assert_eq!(node_address(p, 30, 2), None, "a /30 holds two nodes");
        assert_eq!(node_index(p, 30, Ipv4Addr::new(10, 77, 0, 3)), None);
    }

    #[test]
    fn prefixes_parse_or_say_why_not() {
        assert_eq!(parse_prefix(None), Ok(DEFAULT_PREFIX));
        assert_eq!(parse_prefix(Some("192.168.4.0/24")), Ok((Ipv4Addr::new(192, 168, 4, 0), 24)));
        assert!(matches!(parse_prefix(Some("192.168.4.0")), Err(PrefixError::Shape(_))));
        assert!(matches!(parse_prefix(Some("300.1.1.1/8")), Err(PrefixError::Address(..))));
        assert!(matches!(parse_prefix(Some("10.0.0.0/31")), Err(PrefixError::Length(_))));
    }
}
