//! The S3 client of every role: shared with `diorama-loadgen`'s S3 mode, see [`s3util::client`].
pub use s3util::client::*;
