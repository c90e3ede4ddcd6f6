//! Delivery of event notifications to the configured endpoints (each gets every event, in
//! order, through its own queue: a slow or dead receiver holds up only its own events).
//!
//! Events go out one at a time in the order the store made them, each POSTed as an AWS
//! `{"Records": [...]}` body. A refused or failed delivery is logged and retried with
//! exponential backoff (capped at 2 s) until it succeeds: an event is never dropped while
//! the store runs, so a receiver that was down (killed, restarting) gets every event later.
//!
//! # Limitations
//! The queue lives in memory: events not yet delivered when the store itself dies are lost,
//! as with S3's own at-least-once (not durable-queue) delivery.

use crate::event::{Notification, Record};
use std::time::Duration;
use tokio::sync::mpsc;

/// The sending side of the notification queues, one per endpoint.
#[derive(Clone)]
pub struct Notifier {
    tx: Vec<mpsc::UnboundedSender<Record>>,
}

impl Notifier {
    /// Starts delivery to `endpoint` (an `http://` URL) on the current runtime.
    pub fn start(endpoint: String) -> Notifier {
        Notifier::start_all(vec![endpoint])
    }

    /// Starts delivery to each of `endpoints` (several replicators of one source).
    pub fn start_all(endpoints: Vec<String>) -> Notifier {
        let tx = endpoints
            .into_iter()
            .map(|endpoint| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(deliver(endpoint, rx));
                tx
            })
            .collect();
        Notifier { tx }
    }

    /// Queues `record` for every endpoint.
    pub fn send(&self, record: Record) {
        for tx in &self.tx {
            if tx.send(record.clone()).is_err() {
                tracing::error!("notification queue closed; event not sent");
            }
        }
    }
}

async fn deliver(endpoint: String, mut rx: mpsc::UnboundedReceiver<Record>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    while let Some(record) = rx.recv().await {
        let body = Notification { records: vec![record] };
        let mut backoff = Duration::from_millis(50);
        loop {
            match client.post(&endpoint).json(&body).send().await {
                Ok(resp) if resp.status().is_success() => break,
                Ok(resp) => tracing::warn!(status = %resp.status(), %endpoint, "notification refused; retrying"),
                Err(err) => tracing::warn!(%err, %endpoint, "notification failed; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}
