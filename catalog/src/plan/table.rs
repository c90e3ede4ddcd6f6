//! The plan as a readable table.

use std::fmt;

use super::Plan;

fn mib(b: u64) -> String {
    if b >= 1 << 30 && b % (1 << 30) == 0 {
        format!("{}GiB", b >> 30)
    } else {
        format!("{}MiB", b >> 20)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "TDF {}{} (headroom {}, {} cores reserved per host for diorama and its network emulator)",
            self.tdf,
            if self.tdf_auto { " (auto: the smallest that fits)" } else { "" },
            self.headroom,
            self.reserve_cores
        )?;
        let w = self.nodes.iter().map(|n| n.node.len()).max().unwrap_or(4).max(4);
        let hw = self.nodes.iter().map(|n| n.host.len()).max().unwrap_or(4).max(4);
        writeln!(
            f,
            "{:<w$}  {:<hw$}  {:>6}  {:>10}  {:>16}  {:>8}",
            "node", "host", "cpus", "real share", "quota/period", "memory"
        )?;
        for n in &self.nodes {
            writeln!(
                f,
                "{:<w$}  {:<hw$}  {:>6.2}  {:>9.1}%  {:>16}  {:>8}",
                n.node,
                n.host,
                n.cpus,
                n.real_cpus * 100.0,
                format!("{}/{}us", n.cpu_quota_us, n.cpu_period_us),
                mib(n.memory)
            )?;
        }
        for h in &self.hosts {
            writeln!(
                f,
                "host {}: {} nodes, {:.2} of {} cores ({:.0}%), {} of {} memory",
                h.host,
                h.nodes,
                h.real_cpus,
                h.cores,
                100.0 * h.real_cpus / h.cores,
                mib(h.memory_used),
                mib(h.memory)
            )?;
        }
        Ok(())
    }
}
