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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // SIGINT, SIGTERM and SIGHUP: stop between copied files, remove the
    // half-built temporary folder (.OUT.merging-PID) and leave OUT absent.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: removing the partly merged folder (again to quit at once)");
    });
    let report = match quantdepth::experiment::merge::merge_with(&args.out, &args.shards, &cancel) {
        Err(quantdepth::Error::Interrupted) => {
            eprintln!(
                "merge interrupted: {} was not written; run the merge again",
                args.out.display()
            );
            std::process::exit(130);
        }
        other => other?,
    };
    outln!("{}", report.table.trim_end());
    outln!(
        "merged {} shard folder(s): {}",
        args.shards.len(),
        report.folder.display()
    );
    Ok(())
}
