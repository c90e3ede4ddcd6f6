//! `diorama-isaac`: one tier of the Isaac three-tier service (docs/workloads.md).
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    workloads::runtime::init_tracing();
    workloads::isaac::run(workloads::isaac::Args::parse()).await
}
