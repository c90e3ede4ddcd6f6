//! `diorama-lb`: an L7 HTTP load balancer (docs/workloads.md).
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    workloads::runtime::init_tracing();
    workloads::lb::run(workloads::lb::Args::parse()).await
}
