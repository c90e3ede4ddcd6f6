//! S3 ETags: shared with `diorama-loadgen`'s S3 mode, see [`s3util::etag`].
pub use s3util::etag::*;
