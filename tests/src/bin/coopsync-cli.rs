//! The `coopsync` program under another name, so that cargo builds it for this crate's
//! integration tests (`cargo test` does not build other packages' binaries). Same code:
//! `coopsync::cli::main`.

fn main() -> std::process::ExitCode {
    coopsync_tests::coopsync::cli::main()
}
