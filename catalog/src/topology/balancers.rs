//! The `balancers:` section: L4 balancers in the emulated data path (issue 14). Typed here,
//! checked against the topology's nodes (through `balancer::BalancerSpec::problems`), and
//! resolved into a [`Balancer`] with its `balancer::BalancerConfig`.
//!
//! # Design
//! Node addresses are needed to refuse a VIP that is a node's address. The rule (node *i*
//! in declaration order gets `prefix + 1 + i`) is the `nodeaddr` crate's, shared with the
//! emulator, so that the catalog need not depend on the emulator.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{NetworkDecl, OneOrMany};
use crate::diagnostics::Diagnostics;
use crate::units::Duration;

/// An L4 balancer as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalancerDecl {
    pub name: String,
    /// The virtual IP clients connect to; no node may have it.
    pub vip: String,
    /// The TCP port balanced on the VIP.
    pub port: u16,
    /// Node names, groups or ranges (`mc[0..2]`).
    pub backends: OneOrMany<String>,
    /// `maglev` (static) or `inband` (ENSEMBLETIMEOUT estimates + δ-shift controller).
    pub policy: String,
    /// Relative slot shares, by backend node, group or range (`{mc0: 3, mc1: 1}`); a
    /// backend not named has weight 1. Maglev gives backend *i* `wᵢ / Σw` of the slots.
    pub weights: Option<BTreeMap<String, f64>>,
    /// Maglev table size, prime (default 65537).
    pub table_size: Option<u32>,
    /// Virtual idle time after which a connection is forgotten (default 30s).
    pub idle_timeout: Option<Duration>,
    /// Retransmitted SYNs before a backend is marked down (default 2).
    pub syn_retries_to_fail: Option<u32>,
    /// Virtual time after which an opening SYN followed by nothing on its tuple counts as
    /// a failed handshake (default 3s).
    pub handshake_timeout: Option<Duration>,
    /// Virtual time a backend marked down stays out (default 10s).
    pub down_hold: Option<Duration>,
    /// The FIXEDTIMEOUT ladder, ascending (default 64us … 4096us, 7 rungs).
    pub timeouts: Option<Vec<Duration>>,
    /// ENSEMBLETIMEOUT epoch (default 64ms).
    pub epoch: Option<Duration>,
    /// Per-backend aggregation: the median of the last this many samples (default 64) …
    pub median_window: Option<usize>,
    /// … or an EWMA with this weight per sample (exclusive with `median_window`).
    pub ewma_alpha: Option<f64>,
    /// Which client packets are timed: `data` (those with payload; default) or `all`.
    pub timed: Option<String>,
    /// The cliff's plateau step: from the rung of the largest count ratio, step down while
    /// the rung below counted more than 1 + this times as many samples (default 0.1).
    pub plateau: Option<f64>,
    /// Share moved per controller step (default 0.1).
    pub delta: Option<f64>,
    /// Smallest share the controller leaves a backend (default 0.02).
    pub floor: Option<f64>,
    /// Drain only past this factor over the others' mean (default 1.25).
    pub tolerance: Option<f64>,
    /// At most one controller step per this much virtual time (default 1ms).
    pub min_interval: Option<Duration>,
}

/// A resolved balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Balancer {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// Node names, groups expanded, in the order written.
    pub backends: Vec<String>,
    /// Each backend's weight (relative slot share), in `backends` order.
    pub weights: Vec<f64>,
    pub policy: String,
    /// Where it is declared (`balancers[0]`).
    pub path: String,
    #[serde(skip)]
    pub config: balancer::BalancerConfig,
}

/// The address of every node under the network's rule (`nodeaddr`); `None` for a prefix
/// that does not parse (reported by the harness where it builds the network).
fn node_addresses(network: &NetworkDecl, nodes: &[String]) -> Option<BTreeMap<String, Ipv4Addr>> {
    let (prefix, len) = nodeaddr::parse_prefix(network.prefix.as_deref()).ok()?;
    nodes.iter().enumerate().map(|(i, n)| Some((n.clone(), nodeaddr::node_address(prefix, len, i)?))).collect()
}

/// What else owns `vip` under the network's rule, beyond the nodes (checked by
/// `balancer::BalancerSpec::problems`): a switch's address, or the prefix's network or
/// broadcast address. The emulator would deliver the balancer's traffic there.
fn reserved(network: &NetworkDecl, switches: &[String], vip: Ipv4Addr) -> Option<String> {
    let (prefix, len) = nodeaddr::parse_prefix(network.prefix.as_deref()).ok()?;
    if let Some(s) = switches.iter().enumerate().find(|(j, _)| nodeaddr::switch_address(prefix, len, *j) == Some(vip)) {
        return Some(format!("switch {}'s address", s.1));
    }
    let net = nodeaddr::network(prefix, len);
    let broadcast = net.saturating_add(u32::try_from(nodeaddr::room(len)).ok()?.saturating_add(1));
    if u32::from(vip) == net {
        return Some(format!("the network address of {prefix}/{len}"));
    }
    if u32::from(vip) == broadcast {
        return Some(format!("the broadcast address of {prefix}/{len}"));
    }
    None
}

fn ns(d: Option<Duration>, default: u64) -> u64 {
    d.map_or(default, |d| u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX))
}

/// The balancer's constants from a declaration (defaults where it says nothing).
fn config(d: &BalancerDecl, policy: balancer::Policy, timed: balancer::Timed) -> balancer::BalancerConfig {
    let base = balancer::BalancerConfig::default();
    let mut estimator = base.estimator.clone();
    if let Some(t) = &d.timeouts {
        estimator.ladder_ns = t.iter().map(|t| ns(Some(*t), 0)).collect();
        estimator.initial_index = estimator.initial_index.min(estimator.ladder_ns.len().saturating_sub(1));
    }
    estimator.epoch_ns = ns(d.epoch, estimator.epoch_ns);
    if let Some(alpha) = d.ewma_alpha {
        estimator.aggregation = balancer::Aggregation::Ewma { alpha };
    }
    if let Some(window) = d.median_window {
        estimator.aggregation = balancer::Aggregation::WindowMedian { window };
    }
    estimator.timed = timed;
    estimator.plateau = d.plateau.unwrap_or(estimator.plateau);
    let c = &base.controller;
    let controller = balancer::ControllerConfig {
        delta: d.delta.unwrap_or(c.delta),
        floor: d.floor.unwrap_or(c.floor),
        tolerance: d.tolerance.unwrap_or(c.tolerance),
        min_interval_ns: ns(d.min_interval, c.min_interval_ns),
    };
    balancer::BalancerConfig {
        policy,
        table_size: d.table_size.unwrap_or(base.table_size),
        idle_timeout_ns: ns(d.idle_timeout, base.idle_timeout_ns),
        syn_retries_to_fail: d.syn_retries_to_fail.unwrap_or(base.syn_retries_to_fail),
        handshake_timeout_ns: ns(d.handshake_timeout, base.handshake_timeout_ns),
        down_hold_ns: ns(d.down_hold, base.down_hold_ns),
        estimator,
        controller,
    }
}

/// Each backend's weight (1 where `weights` names it not); a bad weight or a name that is
/// no backend goes to `diags` at its value.
fn weights(
    d: &BalancerDecl,
    path: &str,
    backends: &[String],
    select: &impl Fn(&str) -> Result<Vec<String>, String>,
    diags: &mut Diagnostics<'_>,
) -> Vec<f64> {
    let mut out = vec![1.0; backends.len()];
    for (key, &w) in d.weights.iter().flatten() {
        let field = format!("{path}.weights.{key}");
        if !(w.is_finite() && w > 0.0) {
            diags.at_value(&field, format!("weight {w} of {key:?}: a weight must be a positive finite number"));
            continue;
        }
        let members = select(key).unwrap_or_default();
        if members.is_empty() || !members.iter().all(|m| backends.contains(m)) {
            diags.at_value(&field, format!("{key:?} is not a backend of balancer {}", d.name));
            continue;
        }
        for m in members {
            for (b, slot) in backends.iter().zip(out.iter_mut()) {
                if *b == m {
                    *slot = w;
                }
            }
        }
    }
    out
}

/// Checks and resolves every balancer; problems go to `diags` at their field.
pub(super) fn resolve(
    decls: &[BalancerDecl],
    network: &NetworkDecl,
    nodes: &[String],
    switches: &[String],
    select: impl Fn(&str) -> Result<Vec<String>, String>,
    diags: &mut Diagnostics<'_>,
) -> Vec<Balancer> {
    let addresses = node_addresses(network, nodes).unwrap_or_default();
    let mut out = Vec::new();
    let mut seen: BTreeMap<(Ipv4Addr, u16), String> = BTreeMap::new();
    for (i, d) in decls.iter().enumerate() {
        let path = format!("balancers[{i}]");
        let before = diags.list.len();
        let Ok(vip) = d.vip.parse::<Ipv4Addr>() else {
            diags.at_value(&format!("{path}.vip"), format!("{:?} is not an IPv4 address", d.vip));
            continue;
        };
        if let Some(why) = reserved(network, switches, vip) {
            diags.at_value(
                &format!("{path}.vip"),
                format!("VIP {vip} is {why}; a VIP must be an address no node or switch has"),
            );
        }
        // Backends: each entry a node, group or range; an entry that is not one is
        // reported at its own position.
        let written = d.backends.to_vec();
        let mut backends = Vec::new();
        for (j, b) in written.iter().enumerate() {
            let field = match d.backends {
                OneOrMany::One(_) => format!("{path}.backends"),
                OneOrMany::Many(_) => format!("{path}.backends[{j}]"),
            };
            match select(b) {
                Ok(members) => backends.extend(members),
                Err(_) => diags.at_value(&field, format!("backend {b:?} is not a node or group of this topology")),
            }
        }
        let spec = balancer::BalancerSpec {
            name: d.name.clone(),
            vip,
            port: d.port,
            backends: if written.is_empty() { Vec::new() } else { backends.clone() },
            policy: d.policy.clone(),
        };
        for p in spec.problems(&addresses) {
            // Backends that are not nodes were reported above, at the entry written.
            if p.field.starts_with("backends[") {
                continue;
            }
            diags.at_value(&format!("{path}.{}", p.field), p.message);
        }
        if let Some(first) = seen.insert((vip, d.port), path.clone()) {
            diags.at_value(&format!("{path}.vip"), format!("{vip}:{} is balanced already (at {first})", d.port));
        }
        let weights = weights(d, &path, &backends, &select, diags);
        if d.ewma_alpha.is_some() && d.median_window.is_some() {
            diags.at_value(
                &format!("{path}.ewma_alpha"),
                "ewma_alpha and median_window are two aggregations; give one".to_owned(),
            );
        }
        let timed = match d.timed.as_deref().map(str::parse::<balancer::Timed>) {
            None => balancer::Timed::default(),
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                diags.at_value(&format!("{path}.timed"), e);
                balancer::Timed::default()
            }
        };
        if diags.list.len() > before {
            continue;
        }
        let Ok(policy) = d.policy.parse() else { continue };
        let config = config(d, policy, timed);
        // Building it once checks every constant (ladder, table size, δ, floor …).
        if let Err(e) = balancer::Balancer::new(config.clone(), backends.clone(), weights.clone()) {
            diags.at(&path, e.to_string());
            continue;
        }
        out.push(Balancer {
            name: d.name.clone(),
            vip,
            port: d.port,
            backends,
            weights,
            policy: d.policy.clone(),
            path,
            config,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const TOPOLOGY: &str = r#"
name: l4
switches: [sw]
nodes:
  - name: mc[0..2]
    run: {command: "memcached"}
    link: {to: sw, rate: 1Gbit, delay: 100us}
  - name: client
    run: {command: "true"}
    link: {to: sw, rate: 1Gbit, delay: 100us}
balancers:
"#;

    fn load(balancers: &str) -> Result<super::super::Topology, crate::topology::CatalogError> {
        super::super::read_str(Path::new("t.yaml"), &format!("{TOPOLOGY}{balancers}"))
    }

    /// (line, field, message) of every diagnostic.
    fn problems(balancers: &str) -> Vec<(usize, usize, String, String)> {
        let err = load(balancers).expect_err("should be refused");
        err.diagnostics.into_iter().map(|d| (d.pos.line, d.pos.col, d.field, d.message)).collect()
    }

    #[test]
    fn a_good_balancer_resolves_with_its_constants() {
        let t = load(
            "  - {name: l4, vip: 10.77.255.1, port: 11211, backends: mc, policy: inband, delta: 0.2, epoch: 32ms}\n",
        )
        .unwrap();
        let b = &t.balancers[0];
        assert_eq!(b.backends, ["mc0", "mc1"]);
        assert_eq!(b.vip, Ipv4Addr::new(10, 77, 255, 1));
        assert_eq!(b.config.policy, balancer::Policy::Inband);
        assert_eq!(b.config.controller.delta, 0.2);
        assert_eq!(b.config.estimator.epoch_ns, 32_000_000);
        assert_eq!(b.config.table_size, 65_537);
        assert_eq!(b.config.estimator.timed, balancer::Timed::Data);
        let t = load(
            "  - {name: l4, vip: 10.77.255.1, port: 11211, backends: mc, policy: inband, timed: all, plateau: 0.25}\n",
        )
        .unwrap();
        let e = &t.balancers[0].config.estimator;
        assert_eq!((e.timed, e.plateau), (balancer::Timed::All, 0.25));
        let p = problems("  - {name: l4, vip: 10.77.255.1, port: 1, backends: mc, policy: inband, timed: some}\n");
        assert!(
            p.iter().any(|(_, _, f, m)| f == "balancers[0].timed" && m.contains("expected one of data, all")),
            "{p:?}"
        );
        let p = problems(
            "  - {name: l4, vip: 10.77.255.1, port: 1, backends: mc, policy: inband, ewma_alpha: 0.1, median_window: 8}\n",
        );
        assert!(p.iter().any(|(_, _, f, m)| f == "balancers[0].ewma_alpha" && m.contains("give one")), "{p:?}");
        let p = problems("  - {name: l4, vip: 10.77.255.1, port: 1, backends: mc, policy: inband, plateau: -1}\n");
        assert!(p.iter().any(|(_, _, f, m)| f == "balancers[0]" && m.contains("plateau")), "{p:?}");
    }

    #[test]
    fn bad_declarations_are_refused_at_their_field() {
        // Line 12 is the first balancer's line (TOPOLOGY ends at line 11).
        let p = problems(
            "  - name: l4\n    vip: 10.77.0.3\n    port: 11211\n    backends: [mc0, web]\n    policy: fastest\n",
        );
        let fields: Vec<(usize, &str)> = p.iter().map(|(l, _, f, _)| (*l, f.as_str())).collect();
        assert_eq!(
            fields,
            [(13, "balancers[0].vip"), (15, "balancers[0].backends[1]"), (16, "balancers[0].policy")],
            "{p:?}"
        );
        assert!(p[0].3.contains("client's address"), "{p:?}");
        assert!(p[1].3.contains("\"web\" is not a node"), "{p:?}");
        assert!(p[2].3.contains("unknown policy"), "{p:?}");
        assert_eq!(p[0].1, 10, "column of the value");
        let empty = problems("  - {name: l4, vip: 10.77.255.1, port: 1, backends: [], policy: maglev}\n");
        assert_eq!(empty.len(), 1, "{empty:?}");
        assert_eq!((empty[0].0, empty[0].2.as_str()), (12, "balancers[0].backends"));
        assert!(empty[0].3.contains("at least one backend"));
        let bad_table =
            problems("  - {name: l4, vip: 10.77.255.1, port: 1, backends: mc, policy: maglev, table_size: 100}\n");
        assert_eq!(bad_table[0].2, "balancers[0]", "{bad_table:?}");
    }

    #[test]
    fn a_vip_that_a_switch_or_the_prefix_owns_is_refused() {
        // sw is switch 0: the last address below the broadcast of 10.77.0.0/16.
        for (vip, owner) in [
            ("10.77.255.254", "switch sw's address"),
            ("10.77.0.0", "the network address of 10.77.0.0/16"),
            ("10.77.255.255", "the broadcast address of 10.77.0.0/16"),
            ("10.77.0.2", "node mc1's address"),
        ] {
            let p = problems(&format!("  - {{name: l4, vip: {vip}, port: 1, backends: mc, policy: maglev}}\n"));
            assert!(p.iter().any(|(_, _, field, m)| field == "balancers[0].vip" && m.contains(owner)), "{vip}: {p:?}");
        }
        assert!(load("  - {name: l4, vip: 10.77.255.1, port: 1, backends: mc, policy: maglev}\n").is_ok());
    }

    #[test]
    fn weights_are_per_backend_and_checked() {
        let t = load("  - {name: l4, vip: 10.77.255.1, port: 1, backends: mc, policy: maglev, weights: {mc1: 3}}\n")
            .unwrap();
        assert_eq!(t.balancers[0].weights, [1.0, 3.0]);
        let t = load("  - {name: l4, vip: 10.77.255.1, port: 1, backends: mc, policy: maglev, weights: {mc: 2}}\n")
            .unwrap();
        assert_eq!(t.balancers[0].weights, [2.0, 2.0], "a group gives each member its weight");
        let p = problems(
            "  - name: l4\n    vip: 10.77.255.1\n    port: 1\n    backends: mc\n    policy: maglev\n    weights: {mc0: 0, client: 2, mc1: .nan}\n",
        );
        let got: Vec<(usize, usize, &str)> = p.iter().map(|(l, c, f, _)| (*l, *c, f.as_str())).collect();
        let want = [
            (17, 20, "balancers[0].weights.mc0"),
            (17, 31, "balancers[0].weights.client"),
            (17, 39, "balancers[0].weights.mc1"),
        ];
        assert_eq!(got, want, "{p:?}");
        assert!(p.iter().any(|d| d.3.contains("\"client\" is not a backend")), "{p:?}");
        assert!(p.iter().any(|d| d.3.contains("positive finite")), "{p:?}");
    }

    #[test]
    fn node_addresses_follow_the_network_rule() {
        let nodes = vec!["a".to_owned(), "b".to_owned()];
        let a = node_addresses(&NetworkDecl::default(), &nodes).unwrap();
        assert_eq!(a["a"], Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(a["b"], Ipv4Addr::new(10, 77, 0, 2));
        let net = NetworkDecl { prefix: Some("192.168.4.0/24".into()), backend: None };
        assert_eq!(node_addresses(&net, &nodes).unwrap()["b"], Ipv4Addr::new(192, 168, 4, 2));
    }
}
