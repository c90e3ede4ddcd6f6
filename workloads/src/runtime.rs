//! What every workload program shares at its edges: logging, the clock, and shutdown.
//!
//! # Design
//! Workloads take every timestamp from the process's own `CLOCK_REALTIME` (through
//! `SystemTime`), never from anything the harness tells them: under the clock shim that is
//! virtual time, so every figure they record is in the perceived time of the scale model,
//! and timestamps taken on different nodes of one run compare (one epoch per run).

use std::time::{SystemTime, UNIX_EPOCH};

/// Logs to stderr with `tracing`; the filter comes from `DIORAMA_LOG` (default `info`).
pub fn init_tracing() {
    let filter = std::env::var("DIORAMA_LOG").unwrap_or_else(|_| "info".into());
    let filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Now, in unix nanoseconds of this process's (possibly dilated) wall clock.
pub fn now_unix_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Resolves when the process gets SIGTERM or SIGINT: the harness stops nodes with SIGTERM,
/// and a workload must then flush its results and exit 0.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the default action (exit) applies; never resolve here.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_unix_time() {
        let a = now_unix_ns();
        // After 2020-01-01 and monotone enough for two reads.
        assert!(a > 1_577_836_800_000_000_000);
        assert!(now_unix_ns() >= a);
    }
}
