//! Delivery of event notifications to the configured endpoint.
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

/// The sending side of the notification queue.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Record>,
}

impl Notifier {
    /// Starts delivery to `endpoint` (an `http://` URL) on the current runtime.
    pub fn start(endpoint: String) -> Notifier {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(deliver(endpoint, rx));
        Notifier { tx }
    }

    /// Queues `record`.
    pub fn send(&self, record: Record) {
        if self.tx.send(record).is_err() {
            tracing::error!("notification queue closed; event not sent");
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
