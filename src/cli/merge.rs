//! `quantdepth merge OUT SHARD_DIR...`: shard folders into one results folder.

use crate::outln;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Options of `quantdepth merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The merged results folder to write (must not exist).
    pub out: PathBuf,
    /// The shard folders (e.g. DIR/shards/<name>-shard-*-of-M).
    #[arg(value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,
}

pub fn merge(args: MergeArgs) -> Result<()> {
    let report = quantdepth::experiment::merge::merge(&args.out, &args.shards)?;
    outln!("{}", report.table.trim_end());
    outln!(
        "merged {} shard folder(s): {}",
        args.shards.len(),
        report.folder.display()
    );
    Ok(())
}
