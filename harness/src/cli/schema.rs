//! `diorama schema`: the JSON Schema of topology files, for editors.

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<u8> {
    super::out!("{}", serde_json::to_string_pretty(&catalog::topology::schema())?);
    Ok(super::exit::OK)
}
