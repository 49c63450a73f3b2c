//! The `coopsync` binary: parse the command line, load settings, run the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = coopsync::cli::Cli::parse();
    match coopsync::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("coopsync: error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
