//! The S3 client of every role: `object_store`'s `AmazonS3` against a store endpoint.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, RetryConfig};
use std::future::Future;
use std::time::Duration;

/// Where a store is and how to sign for it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// `http://host:port`.
    pub url: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Builds a client for `ep`. Failed requests (5xx, 429, transport) are retried with backoff
/// by `object_store` (up to 10 times within 60 s), and each retry is logged by it; a store's
/// refusal (4xx) is not: see [`retry_refused`].
pub fn connect(ep: &Endpoint) -> object_store::Result<AmazonS3> {
    AmazonS3Builder::new()
        .with_endpoint(&ep.url)
        .with_bucket_name(&ep.bucket)
        .with_region(&ep.region)
        .with_access_key_id(&ep.access_key)
        .with_secret_access_key(&ep.secret_key)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: Duration::from_secs(60),
        })
        .build()
}

/// The HTTP status of a store's refusal (a 4xx answer other than not-found, precondition
/// failed and not-modified, which callers handle), found in `err` or its sources.
/// `object_store` keeps its retry error private, so the status is read from the message it
/// prints (`… status code: 403 Forbidden …`).
pub fn refusal(err: &object_store::Error) -> Option<u16> {
    use object_store::Error as E;
    if matches!(err, E::NotFound { .. } | E::Precondition { .. } | E::NotModified { .. } | E::AlreadyExists { .. }) {
        return None;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if let Some(at) = text.find("status code: ") {
            let digits: String = text[at + 13..].chars().take_while(char::is_ascii_digit).collect();
            match digits.parse::<u16>() {
                Ok(code) if (400..500).contains(&code) => return Some(code),
                _ => {}
            }
        }
        cur = e.source();
    }
    None
}

/// How often and how patiently a refused request is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Attempts in all (the first included).
    pub attempts: u32,
}

impl Backoff {
    /// An instance's: 0.1 s, doubling up to 2 s, five attempts (about 3 s).
    pub const REFUSED: Backoff =
        Backoff { first: Duration::from_millis(100), max: Duration::from_secs(2), attempts: 5 };
}

/// Runs `op`, and runs it again after a growing pause while the store refuses it (a 4xx:
/// throttling by a 403 or 400 of a busy store, a request signed at a skewed time, a part of
/// an upload being aborted), logging every refusal; any other outcome, or the last refusal,
/// is answered as it is. `object_store` retries only 5xx, 429 and transport errors.
pub async fn retry_refused<T, F, Fut>(what: &str, backoff: Backoff, mut op: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let mut wait = backoff.first;
    let mut attempt = 1;
    loop {
        let err = match op().await {
            Ok(v) => return Ok(v),
            Err(err) => err,
        };
        let Some(status) = refusal(&err).filter(|_| attempt < backoff.attempts) else { return Err(err) };
        tracing::warn!(what, status, attempt, retry_in_ms = wait.as_millis() as u64, %err, "the store refused a request; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(backoff.max);
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic { store: "S3", source: Box::new(std::io::Error::other(text.to_owned())) }
    }

    #[test]
    fn a_refusal_is_told_by_its_status() {
        let e = generic("Error performing PUT http://s/data/k in 2ms - Server returned non-2xx status code: 403 Forbidden: <Error/>");
        assert_eq!(refusal(&e), Some(403));
        assert_eq!(refusal(&generic("Server returned non-2xx status code: 503 Service Unavailable")), None);
        assert_eq!(refusal(&generic("connection refused")), None);
        let not_found = object_store::Error::NotFound {
            path: "k".into(),
            source: Box::new(std::io::Error::other("status code: 404 Not Found")),
        };
        assert_eq!(refusal(&not_found), None, "callers handle a missing object");
    }

    #[tokio::test]
    async fn a_refused_request_is_retried_with_a_growing_pause_then_answered() {
        let backoff = Backoff { first: Duration::from_millis(20), max: Duration::from_millis(50), attempts: 4 };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let t0 = std::time::Instant::now();
        let r: object_store::Result<()> = retry_refused("put k", backoff, || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err(generic("status code: 400 Bad Request")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        // Pauses of 20, 40 and 50 ms.
        assert!(t0.elapsed() >= Duration::from_millis(110), "{:?}", t0.elapsed());
        // A refusal that clears is answered with the success; other errors are not retried.
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r = retry_refused("get k", backoff, || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(generic("status code: 403 Forbidden"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: object_store::Result<()> = retry_refused("get k", backoff, || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err(generic("connection reset")) }
        })
        .await;
        assert!(r.is_err() && calls.load(std::sync::atomic::Ordering::SeqCst) == 1);
    }
}
