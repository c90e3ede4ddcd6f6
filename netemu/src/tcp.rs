//! Kernel TCP timers scaled by the TDF inside a node's network namespace.
//!
//! A node's TCP stack runs in the host kernel on *real* time; its timers must stretch by the
//! TDF so that, seen through the node's dilated clock, they keep their usual values.
//!
//! # Design
//! Each setting is read in the fresh namespace (the kernel's default there), multiplied by
//! the TDF, written, and read back; what the kernel accepted is reported. Where
//! `net.ipv4.tcp_rto_min_us` is missing (kernels before 6.11), the caller sets the route
//! metric `rto_min` on the node's routes instead ([`rto_min_route_ms`]).
//!
//! # Limitations
//! Not scalable from user space: the initial RTO (1 s, `TCP_TIMEOUT_INIT`), hence SYN and
//! SYN-ACK retransmission timing; the delayed-ACK timers (40–200 ms); TIME-WAIT (60 s);
//! `tcp_rto_max_ms` is capped at 120,000 by the kernel, so at TDF `t` the perceived maximum
//! RTO is `120 s / t`.

use std::io;

use serde::Serialize;

use crate::netns::NetNs;

/// One scaled setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimerSetting {
    pub key: &'static str,
    /// The kernel's default in the namespace, `None` when the setting does not exist.
    pub default: Option<u64>,
    pub wanted: Option<u64>,
    /// What reads back after writing.
    pub set: Option<u64>,
    /// Why `set` differs from `wanted`, if it does.
    pub note: Option<String>,
}

/// The settings scaled, with the kernel's maximum where it has one.
const SCALED: [(&str, Option<u64>); 5] = [
    ("net.ipv4.tcp_rto_min_us", None),
    ("net.ipv4.tcp_rto_max_ms", Some(120_000)),
    ("net.ipv4.tcp_keepalive_time", None),
    ("net.ipv4.tcp_keepalive_intvl", None),
    ("net.ipv4.tcp_fin_timeout", None),
];

/// `value × tdf`, rounded, at least 1.
pub fn scaled(value: u64, tdf: f64) -> u64 {
    ((value as f64 * tdf).round() as u64).max(1)
}

/// The route metric `rto_min` (ms) standing in for `tcp_rto_min_us` (default 200 ms).
pub fn rto_min_route_ms(tdf: f64) -> u32 {
    u32::try_from(scaled(200, tdf)).unwrap_or(u32::MAX)
}

/// Scales every TCP timer of `ns` by `tdf`. At TDF 1 nothing is written.
pub fn scale_timers(ns: &NetNs, tdf: f64) -> io::Result<Vec<TimerSetting>> {
    let mut out = Vec::with_capacity(SCALED.len());
    for (key, max) in SCALED {
        let default = ns.sysctl_read(key)?.and_then(|v| v.parse::<u64>().ok());
        let Some(default) = default else {
            out.push(TimerSetting {
                key,
                default: None,
                wanted: None,
                set: None,
                note: Some("not in this kernel".into()),
            });
            continue;
        };
        let wanted = scaled(default, tdf);
        if wanted == default {
            out.push(TimerSetting {
                key,
                default: Some(default),
                wanted: Some(wanted),
                set: Some(default),
                note: None,
            });
            continue;
        }
        let target = max.map_or(wanted, |m| wanted.min(m));
        let set = match ns.sysctl_write(key, &target.to_string()) {
            Ok(v) => v.parse().ok(),
            Err(e) => {
                out.push(TimerSetting {
                    key,
                    default: Some(default),
                    wanted: Some(wanted),
                    set: Some(default),
                    note: Some(format!("refused: {e}")),
                });
                continue;
            }
        };
        let note = (set != Some(wanted)).then(|| format!("the kernel caps it at {target}"));
        out.push(TimerSetting { key, default: Some(default), wanted: Some(wanted), set, note });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_rounds_and_never_reaches_zero() {
        assert_eq!(scaled(200_000, 10.0), 2_000_000);
        assert_eq!(scaled(1, 0.1), 1);
        assert_eq!(rto_min_route_ms(4.0), 800);
    }

    #[test]
    fn timers_scale_inside_a_namespace_only() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIPPED: timers_scale_inside_a_namespace_only: needs root");
            return;
        }
        let ns = NetNs::create().unwrap();
        let settings = scale_timers(&ns, 10.0).unwrap();
        let fin = settings.iter().find(|s| s.key == "net.ipv4.tcp_fin_timeout").unwrap();
        assert_eq!(fin.set, Some(fin.default.unwrap() * 10));
        if let Some(max) = settings.iter().find(|s| s.key == "net.ipv4.tcp_rto_max_ms" && s.default.is_some()) {
            assert_eq!(max.set, Some(120_000));
            assert!(max.note.is_some());
        }
        let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap();
        assert_ne!(host.trim(), fin.set.unwrap().to_string());
    }
}
