//! `diorama check FILE…`: validate topologies without running anything.

use std::path::PathBuf;

use super::exit;
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topology files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also plan each topology on this machine (catches impossible plans).
    #[arg(long)]
    pub plan: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut failed = 0;
    for file in &args.files {
        match catalog::load::topology(file) {
            Ok(t) => {
                if args.plan {
                    if let Err(e) = crate::experiment::plan(&t, None, None) {
                        eprintln!("{e}");
                        failed += 1;
                        continue;
                    }
                }
                println!("{}: ok ({} nodes, {} links)", file.display(), t.nodes.len(), t.links.len());
            }
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Error::InvalidFiles { invalid: failed, total: args.files.len() }.into());
    }
    Ok(exit::OK)
}
