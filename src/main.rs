//! The `quantdepth` command line: a thin layer over the library. The
//! subcommands and their output live in `cli/`, one file each; here the
//! arguments are parsed and dispatched, and errors become exit codes.

mod cli;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    cli::quiet_wayland_probe();
    // clap's own message, whole: it names missing arguments, lists the
    // allowed values and suggests the nearest subcommand or flag.
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Theory(t) => cli::theory::theory(t),
        Command::Simulate(args) => cli::simulate::simulate(args),
        Command::Bench(args) => cli::bench::bench(args),
        Command::Slurm(args) => cli::slurm::slurm(args),
        Command::Merge(args) => cli::merge::merge(args),
        Command::Init(args) => cli::init::init(args),
    };
    // Exit status 1 with the whole chain of causes on one line; an
    // interrupted run or simulation exits 130 itself, after its output.
    if let Err(e) = result {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
