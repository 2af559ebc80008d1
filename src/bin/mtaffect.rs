//! The mtaffect command line.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mtaffect",
    version,
    about = "Multi-task facial affect training (VA, AUs, expressions)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the multi-task model (default: built-in synthetic data, CPU if no GPU).
    Train,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Train => {
            println!("mtaffect train: not yet available (the training loop lands with the multi-task SE-ResNet work)");
            ExitCode::SUCCESS
        }
    }
}
