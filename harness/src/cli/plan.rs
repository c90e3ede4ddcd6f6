//! `diorama plan FILE [--tdf N] [--out plan.json]`: show where nodes go and the TDF.

use std::path::PathBuf;

use anyhow::Context;

use super::exit;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub file: PathBuf,
    /// A fixed TDF (default: the topology's, or the smallest that fits).
    #[arg(long, value_parser = super::parse_tdf)]
    pub tdf: Option<f64>,
    /// Share of host cores the plan may use.
    #[arg(long)]
    pub headroom: Option<f64>,
    /// Where to write plan.json.
    #[arg(long, default_value = "plan.json")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let topology = crate::experiment::load(&args.file)?;
    let plan = crate::experiment::plan(&topology, args.tdf, args.headroom)?;
    super::out!("{}", plan.to_string().trim_end());
    std::fs::write(&args.out, serde_json::to_vec_pretty(&plan)?)
        .with_context(|| format!("write {}", args.out.display()))?;
    testbed::note!("wrote {}", args.out.display());
    Ok(exit::OK)
}
