//! The S3 client of every role: `object_store`'s `AmazonS3` against a store endpoint.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, RetryConfig};
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

/// Builds a client for `ep`. Refused requests are retried with backoff by `object_store`
/// (up to 10 times within 60 s), and each retry is logged by it.
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
