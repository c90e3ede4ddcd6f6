//! What every S3 client of diorama shares, without the server side (`s3s`):
//! - [`etag`]: S3 ETags (MD5 of a single PUT; MD5 of the part MD5s with `-N`);
//! - [`changelog`]: the changelog records (hints) of COPY, MOVE, CONCAT and APPEND;
//! - [`client`]: the `object_store` client of a store endpoint, and the retry of requests a
//!   store refuses.
//!
//! `replica` (the store, the replicator) and `workloads` (`diorama-loadgen s3`) both use it,
//! so the writer and the replicator agree on ETags by construction.
#![forbid(unsafe_code)]

pub mod changelog;
pub mod client;
pub mod etag;
