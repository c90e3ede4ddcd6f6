//! Checking a balancer's declaration against the topology it sits in, as pure data: the
//! topology loader maps each [`Problem`]'s field path to a file:line:col.
//!
//! The rules: the VIP is not a node's address; the backend list is not empty and names
//! only nodes; the policy is one of [`Policy::NAMES`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::config::Policy;

/// A balancer as declared in a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerSpec {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// Node names (groups already expanded by the loader).
    pub backends: Vec<String>,
    pub policy: String,
}

/// One thing wrong with a declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The offending field, relative to the balancer: `vip`, `backends`, `backends[2]`,
    /// `policy`.
    pub field: String,
    pub message: String,
}

impl BalancerSpec {
    /// Every problem of this declaration, given the topology's node addresses.
    #[must_use]
    pub fn problems(&self, nodes: &BTreeMap<String, Ipv4Addr>) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some((node, _)) = nodes.iter().find(|(_, &a)| a == self.vip) {
            out.push(Problem {
                field: "vip".into(),
                message: format!("VIP {} is node {node}'s address; a VIP must be an address no node has", self.vip),
            });
        }
        if self.backends.is_empty() {
            out.push(Problem { field: "backends".into(), message: "a balancer needs at least one backend".into() });
        }
        for (i, b) in self.backends.iter().enumerate() {
            if !nodes.contains_key(b) {
                out.push(Problem {
                    field: format!("backends[{i}]"),
                    message: format!("backend {b} is not a node of this topology"),
                });
            }
        }
        if self.policy.parse::<Policy>().is_err() {
            out.push(Problem {
                field: "policy".into(),
                message: format!("unknown policy {:?}; expected one of {}", self.policy, Policy::NAMES.join(", ")),
            });
        }
        if self.port == 0 {
            out.push(Problem { field: "port".into(), message: "port 0 cannot be balanced".into() });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> BTreeMap<String, Ipv4Addr> {
        [("mc0".to_owned(), Ipv4Addr::new(10, 77, 0, 2)), ("mc1".to_owned(), Ipv4Addr::new(10, 77, 0, 3))].into()
    }

    fn spec() -> BalancerSpec {
        BalancerSpec {
            name: "l4".into(),
            vip: Ipv4Addr::new(10, 77, 255, 1),
            port: 11211,
            backends: vec!["mc0".into(), "mc1".into()],
            policy: "inband".into(),
        }
    }

    #[test]
    fn a_good_declaration_has_no_problems() {
        assert!(spec().problems(&nodes()).is_empty());
    }

    #[test]
    fn every_problem_names_its_field() {
        let s = BalancerSpec {
            vip: Ipv4Addr::new(10, 77, 0, 3),
            backends: vec!["mc0".into(), "web".into()],
            policy: "fastest".into(),
            port: 0,
            ..spec()
        };
        let fields: Vec<String> = s.problems(&nodes()).into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["vip", "backends[1]", "policy", "port"]);
        let empty = BalancerSpec { backends: vec![], ..spec() };
        assert_eq!(empty.problems(&nodes())[0].field, "backends");
    }
}
