//! The emulated network's graph: nodes and switches joined by links, node and switch
//! addresses, and routes (shortest paths by hop count, ties broken deterministically).
//!
//! # Addresses
//! Both come from the spec's prefix, here and nowhere else in the emulator:
//! - node *i* (declaration order) gets `network + 1 + i`, counting up (10.77.0.1, 10.77.0.2, …);
//! - switch *j* gets `broadcast − 1 − j`, counting down from the top (10.77.255.254,
//!   10.77.255.253, …): the source of the ICMP time-exceeded replies a switch sends
//!   (`crate::hop`) and, in the kernel backend, the router namespace's own address.
//!
//! Both ranges are inside the prefix, so every node's on-link prefix route covers a
//! switch's replies (no extra route, and a strict `rp_filter` accepts them), and
//! [`Graph::build`] refuses a prefix that cannot hold nodes and switches without overlap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::link::{LinkError, LinkParams};

/// A link between two endpoints (nodes or switches), each direction with its own parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkSpec {
    pub name: String,
    pub a: String,
    pub b: String,
    /// a → b.
    pub forward: LinkParams,
    /// b → a.
    pub reverse: LinkParams,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetSpec {
    /// The private prefix node addresses come from, e.g. 10.77.0.0/16.
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    pub nodes: Vec<String>,
    pub switches: Vec<String>,
    pub links: Vec<LinkSpec>,
}

/// Errors of building the graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("link {link} names unknown endpoint {endpoint}")]
    UnknownEndpoint { link: String, endpoint: String },
    #[error("duplicate name {0} among nodes, switches and links")]
    Duplicate(String),
    #[error(
        "prefix {prefix}/{len} has room for {room} addresses, {nodes} nodes and {switches} switches need one each"
    )]
    PrefixTooSmall { prefix: Ipv4Addr, len: u8, room: u64, nodes: usize, switches: usize },
    #[error("invalid parameters of link {link}")]
    Params {
        link: String,
        #[source]
        source: LinkError,
    },
}

/// Direction of travel over a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Dir {
    /// a → b.
    Forward,
    /// b → a.
    Reverse,
}

/// One hop: a link index into [`Graph::links`] and the direction taken.
pub type Hop = (usize, Dir);

/// A validated graph with addresses.
#[derive(Debug, Clone)]
pub struct Graph {
    pub spec: NetSpec,
    /// Vertex names: nodes first (in order), then switches.
    vertices: Vec<String>,
    index: HashMap<String, usize>,
    /// Per vertex: (neighbour, hop), sorted by link name for deterministic ties.
    adjacency: Vec<Vec<(usize, Hop)>>,
    addresses: BTreeMap<String, Ipv4Addr>,
    switch_addresses: BTreeMap<String, Ipv4Addr>,
}

impl Graph {
    pub fn build(spec: NetSpec) -> Result<Self, GraphError> {
        let mut vertices: Vec<String> = spec.nodes.clone();
        vertices.extend(spec.switches.iter().cloned());
        let mut index = HashMap::new();
        for (i, v) in vertices.iter().enumerate() {
            if index.insert(v.clone(), i).is_some() {
                return Err(GraphError::Duplicate(v.clone()));
            }
        }
        let mut link_names = HashMap::new();
        let mut adjacency = vec![Vec::new(); vertices.len()];
        for (li, l) in spec.links.iter().enumerate() {
            if link_names.insert(l.name.clone(), li).is_some() {
                return Err(GraphError::Duplicate(l.name.clone()));
            }
            for p in [&l.forward, &l.reverse] {
                p.validate().map_err(|source| GraphError::Params { link: l.name.clone(), source })?;
            }
            let end = |e: &String| {
                index
                    .get(e)
                    .copied()
                    .ok_or_else(|| GraphError::UnknownEndpoint { link: l.name.clone(), endpoint: e.clone() })
            };
            let (a, b) = (end(&l.a)?, end(&l.b)?);
            adjacency[a].push((b, (li, Dir::Forward)));
            adjacency[b].push((a, (li, Dir::Reverse)));
        }
        for adj in &mut adjacency {
            adj.sort_by(|x, y| spec.links[x.1 .0].name.cmp(&spec.links[y.1 .0].name).then(x.1 .1.cmp(&y.1 .1)));
        }
        let room = nodeaddr::room(spec.prefix_len);
        if ((spec.nodes.len() + spec.switches.len()) as u64) > room {
            return Err(GraphError::PrefixTooSmall {
                prefix: spec.prefix,
                len: spec.prefix_len,
                room,
                nodes: spec.nodes.len(),
                switches: spec.switches.len(),
            });
        }
        // The address rules are `nodeaddr`'s (the catalog checks VIPs against them too);
        // every index is within the room checked above.
        let addresses = spec
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((n.clone(), nodeaddr::node_address(spec.prefix, spec.prefix_len, i)?)))
            .collect();
        let switch_addresses = spec
            .switches
            .iter()
            .enumerate()
            .filter_map(|(j, s)| Some((s.clone(), nodeaddr::switch_address(spec.prefix, spec.prefix_len, j)?)))
            .collect();
        Ok(Self { spec, vertices, index, adjacency, addresses, switch_addresses })
    }

    /// Every node's address.
    pub fn addresses(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.addresses
    }

    /// Every switch's address (see the module docs).
    pub fn switch_addresses(&self) -> &BTreeMap<String, Ipv4Addr> {
        &self.switch_addresses
    }

    /// The node at an address.
    pub fn node_at(&self, addr: Ipv4Addr) -> Option<&str> {
        let i = nodeaddr::node_index(self.spec.prefix, self.spec.prefix_len, addr)?;
        self.spec.nodes.get(i).map(String::as_str)
    }

    /// The shortest path (by hops) from node `src` to node `dst`; `None` when unreachable.
    /// Ties go to the path whose first differing hop has the smaller link name.
    pub fn route(&self, src: &str, dst: &str) -> Option<Vec<Hop>> {
        let (s, d) = (*self.index.get(src)?, *self.index.get(dst)?);
        if s == d {
            return Some(Vec::new());
        }
        let mut prev: Vec<Option<(usize, Hop)>> = vec![None; self.vertices.len()];
        let mut seen = vec![false; self.vertices.len()];
        let mut queue = VecDeque::from([s]);
        seen[s] = true;
        while let Some(v) = queue.pop_front() {
            if v == d {
                break;
            }
            // Packets do not transit other nodes (hosts are not routers); only switches.
            if v != s && v < self.spec.nodes.len() {
                continue;
            }
            for &(w, hop) in &self.adjacency[v] {
                if !seen[w] {
                    seen[w] = true;
                    prev[w] = Some((v, hop));
                    queue.push_back(w);
                }
            }
        }
        if !seen[d] {
            return None;
        }
        let mut path = Vec::new();
        let mut v = d;
        while let Some((u, hop)) = prev[v] {
            path.push(hop);
            v = u;
        }
        path.reverse();
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn l(name: &str, a: &str, b: &str, delay_ms: u64) -> LinkSpec {
        let p = LinkParams { delay: Duration::from_millis(delay_ms), ..LinkParams::default() };
        LinkSpec { name: name.into(), a: a.into(), b: b.into(), forward: p, reverse: p }
    }

    fn dumbbell() -> Graph {
        Graph::build(NetSpec {
            prefix: Ipv4Addr::new(10, 77, 0, 0),
            prefix_len: 16,
            nodes: vec!["c1".into(), "c2".into(), "s1".into(), "s2".into()],
            switches: vec!["left".into(), "right".into()],
            links: vec![
                l("c1--left", "c1", "left", 1),
                l("c2--left", "c2", "left", 1),
                l("left--right", "left", "right", 10),
                l("s1--right", "s1", "right", 1),
                l("s2--right", "s2", "right", 1),
            ],
        })
        .unwrap()
    }

    #[test]
    fn addresses_are_deterministic() {
        let g = dumbbell();
        assert_eq!(g.addresses()["c1"], Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(g.addresses()["s2"], Ipv4Addr::new(10, 77, 0, 4));
        assert_eq!(g.node_at(Ipv4Addr::new(10, 77, 0, 3)), Some("s1"));
        assert_eq!(g.node_at(Ipv4Addr::new(10, 78, 0, 3)), None);
        // Switches from the top of the prefix down, never a node's address.
        assert_eq!(g.switch_addresses()["left"], Ipv4Addr::new(10, 77, 255, 254));
        assert_eq!(g.switch_addresses()["right"], Ipv4Addr::new(10, 77, 255, 253));
        assert_eq!(g.node_at(Ipv4Addr::new(10, 77, 255, 254)), None);
    }

    #[test]
    fn nodes_and_switches_share_the_prefix_without_overlap() {
        // A /29 has 6 addresses: 4 nodes and 2 switches fit exactly, a third switch does not.
        let spec = |switches: &[&str]| NetSpec {
            prefix: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 29,
            nodes: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            switches: switches.iter().map(|s| (*s).to_owned()).collect(),
            links: vec![],
        };
        let g = Graph::build(spec(&["s", "t"])).unwrap();
        assert_eq!(g.addresses()["d"], Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(g.switch_addresses()["t"], Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(g.switch_addresses()["s"], Ipv4Addr::new(10, 0, 0, 6));
        assert!(matches!(
            Graph::build(spec(&["s", "t", "u"])),
            Err(GraphError::PrefixTooSmall { room: 6, nodes: 4, switches: 3, .. })
        ));
    }

    #[test]
    fn routes_cross_the_shared_bottleneck_in_order() {
        let g = dumbbell();
        let r = g.route("c1", "s2").unwrap();
        let names: Vec<(&str, Dir)> = r.iter().map(|&(i, d)| (g.spec.links[i].name.as_str(), d)).collect();
        assert_eq!(names, [("c1--left", Dir::Forward), ("left--right", Dir::Forward), ("s2--right", Dir::Reverse)]);
        let back = g.route("s2", "c1").unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[1], (2, Dir::Reverse));
        assert_eq!(g.route("c1", "c1").unwrap(), vec![]);
    }

    #[test]
    fn nodes_do_not_route_for_others_and_islands_are_unreachable() {
        let g = Graph::build(NetSpec {
            prefix: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 24,
            nodes: vec!["a".into(), "b".into(), "c".into()],
            switches: vec![],
            links: vec![l("a--b", "a", "b", 1), l("b--c", "b", "c", 1)],
        })
        .unwrap();
        assert!(g.route("a", "b").is_some());
        assert_eq!(g.route("a", "c"), None, "b is a host, not a router");
    }

    #[test]
    fn ties_are_broken_by_link_name() {
        let g = Graph::build(NetSpec {
            prefix: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 24,
            nodes: vec!["a".into(), "b".into()],
            switches: vec!["s".into(), "t".into()],
            links: vec![l("z-a-t", "a", "t", 1), l("t-b", "t", "b", 1), l("m-a-s", "a", "s", 1), l("s-b", "s", "b", 1)],
        })
        .unwrap();
        let r = g.route("a", "b").unwrap();
        assert_eq!(g.spec.links[r[0].0].name, "m-a-s");
    }

    #[test]
    fn bad_graphs_are_refused() {
        let spec = |links, len| NetSpec {
            prefix: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: len,
            nodes: vec!["a".into(), "b".into(), "c".into()],
            switches: vec![],
            links,
        };
        assert!(matches!(
            Graph::build(spec(vec![l("x", "a", "nope", 1)], 24)),
            Err(GraphError::UnknownEndpoint { .. })
        ));
        assert!(matches!(Graph::build(spec(vec![], 31)), Err(GraphError::PrefixTooSmall { .. })));
        assert!(matches!(
            Graph::build(spec(vec![l("x", "a", "b", 1), l("x", "b", "c", 1)], 24)),
            Err(GraphError::Duplicate(_))
        ));
    }
}
