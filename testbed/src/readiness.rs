//! Readiness checks of a started node, evaluated by the harness.
//!
//! A `tcp` check looks for a listening socket on the port in the node's own network
//! namespace through `/proc/<pid>/net/tcp{,6}` of the node's `__init`, so it needs no
//! connection (which could be refused by a backlog, or counted by the server) and works
//! whatever address the server bound.

use std::path::Path;

/// TCP state code of LISTEN in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Whether the network namespace of process `pid` has a TCP socket listening on `port`.
pub fn tcp_listening(proc_root: &Path, pid: u32, port: u16) -> bool {
    ["tcp", "tcp6"].iter().any(|file| {
        std::fs::read_to_string(proc_root.join(pid.to_string()).join("net").join(file))
            .map(|table| table_has_listener(&table, port))
            .unwrap_or(false)
    })
}

/// Parses a `/proc/net/tcp` table: `sl local_address rem_address st …` with addresses as
/// `HEXIP:HEXPORT`.
fn table_has_listener(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1);
        let state = fields.nth(1);
        match (local.and_then(|l| l.rsplit_once(':')), state) {
            (Some((_, hex_port)), Some(st)) => st == TCP_LISTEN && u16::from_str_radix(hex_port, 16).ok() == Some(port),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:0050 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
";

    #[test]
    fn finds_listeners_only() {
        assert!(table_has_listener(TABLE, 8080));
        // Port 80 appears only as an established connection.
        assert!(!table_has_listener(TABLE, 80));
        assert!(!table_has_listener("", 8080));
        assert!(!table_has_listener("header\ngarbage line\n", 8080));
    }

    #[test]
    fn sees_a_real_listener_in_this_namespace() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(tcp_listening(Path::new("/proc"), std::process::id(), port));
        drop(listener);
        assert!(!tcp_listening(Path::new("/proc"), std::process::id(), port));
    }
}
