//! The `coopsync` binary: everything happens in `coopsync::cli::main`.

fn main() -> std::process::ExitCode {
    coopsync::cli::main()
}
