//! `coopsync-bench`: the sync benchmark (docs/performance.md). Build the server binary
//! first, in the same profile:
//!
//! ```text
//! cargo build --release -p coopsync-server -p coopsync-tests
//! target/release/coopsync-bench            # national scale
//! target/release/coopsync-bench --quick    # under a minute (CI)
//! target/release/coopsync-bench --large-document   # only the one-large-session phase
//! target/release/coopsync-bench --workload         # only the reference workload grid
//! target/release/coopsync-bench --cell 200x20      # one workload cell, plain bodies and
//!                                                  # default JS types (add --gzip,
//!                                                  # --canonical for the others)
//! target/release/coopsync-bench --admin            # only import and reports (issue 15)
//! target/release/coopsync-bench --seed             # only the national seed (issue 14:
//!                                                  # run again with
//!                                                  # COOPSYNC_DUPLICATE_DETECTION=false)
//! ```

use coopsync_tests::{Backend, bench};

const USAGE: &str = "usage: coopsync-bench [--quick] [--backend sqlite|postgres] \
[--large-document | --workload | --cell TxD [--gzip] [--canonical] | --admin | --seed]
  (no phase flag: every phase at national scale, both backends; see docs/performance.md)";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // An unknown flag is refused rather than ignored: ignored, `--help` ran the whole
    // national benchmark.
    const FLAGS: [&str; 8] = [
        "--quick",
        "--large-document",
        "--workload",
        "--admin",
        "--seed",
        "--gzip",
        "--canonical",
        "--help",
    ];
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return std::process::ExitCode::SUCCESS;
            }
            "--cell" | "--backend" => {
                rest.next();
            }
            a if FLAGS.contains(&a) => {}
            other => {
                eprintln!("coopsync-bench: unknown argument `{other}`\n{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let quick = args.iter().any(|a| a == "--quick");
    let large_only = args.iter().any(|a| a == "--large-document");
    let workload_only = args.iter().any(|a| a == "--workload");
    let admin_only = args.iter().any(|a| a == "--admin");
    let seed_only = args.iter().any(|a| a == "--seed");
    // One cell of the reference workload, for profiling: `--cell 200x20`.
    let cell: Option<(usize, usize)> = args
        .iter()
        .position(|a| a == "--cell")
        .and_then(|i| args.get(i + 1))
        .and_then(|c| c.split_once('x'))
        .and_then(|(t, d)| Some((t.parse().ok()?, d.parse().ok()?)));
    let workload_only = workload_only || cell.is_some();
    let only = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let mut sizes = if quick {
        bench::Sizes::quick()
    } else {
        bench::Sizes::national()
    };
    sizes.seed_only = seed_only;
    let bin = bench::server_binary();
    if !bin.exists() {
        eprintln!(
            "coopsync-bench: {} not found; run `cargo build [--release] -p coopsync-server` first",
            bin.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    // The admin side: the registry import and the reports at national scale (quick: a
    // province's worth).
    let mut admin = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        if only.as_deref().is_some_and(|o| o != name) || large_only || workload_only || seed_only {
            continue;
        }
        eprintln!("bench: {name}: import and reports");
        match coopsync_tests::admin_bench::run(&bin, backend, quick) {
            Ok(r) => admin.push(r),
            Err(e) if backend == Backend::Postgres => {
                eprintln!("NOTICE: PostgreSQL admin phase skipped: {e}")
            }
            Err(e) => {
                eprintln!("coopsync-bench: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if admin_only {
        println!("{}", coopsync_tests::admin_bench::table(&admin));
        return std::process::ExitCode::SUCCESS;
    }
    // The reference server's workload (issue 17): a grid of T tablets x D documents, gzip
    // and plain bodies, default JS types and canonical ones. CI runs the quick grid.
    let grid: Vec<(usize, usize)> = if let Some(cell) = cell {
        vec![cell]
    } else if quick {
        vec![(10, 4)]
    } else {
        vec![(10, 5), (50, 5), (50, 20), (200, 5), (200, 20)]
    };
    let mut rows = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        if only.as_deref().is_some_and(|o| o != name) || large_only || admin_only || seed_only {
            continue;
        }
        'cells: for &(t, d) in &grid {
            let flag = |f: &str| args.iter().any(|a| a == f);
            let bodies: &[bool] = match cell {
                Some(_) => &[flag("--gzip")],
                None => &[true, false],
            };
            let types: &[bool] = match cell {
                Some(_) => &[flag("--canonical")],
                None => &[false, true],
            };
            for &gzip in bodies {
                for &canonical in types {
                    eprintln!(
                        "bench: {name}: workload {t} x {d}, gzip {gzip}, canonical {canonical}"
                    );
                    match coopsync_tests::workload::run_cell(&bin, backend, t, d, gzip, canonical) {
                        Ok(r) => rows.push(r),
                        Err(e) if backend == Backend::Postgres => {
                            eprintln!("NOTICE: PostgreSQL workload skipped: {e}");
                            break 'cells;
                        }
                        Err(e) => {
                            eprintln!("coopsync-bench: {e}");
                            return std::process::ExitCode::FAILURE;
                        }
                    }
                }
            }
        }
    }
    if workload_only {
        println!("{}", coopsync_tests::workload::table(&rows));
        return std::process::ExitCode::SUCCESS;
    }
    let mut reports = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut log = |m: &str| eprintln!("bench: {m}");
        let run = if large_only {
            bench::run_large_document(&bin, backend, &sizes)
        } else {
            bench::run_backend(&bin, backend, &sizes, &mut log)
        };
        match run {
            Ok(r) => reports.push(r),
            Err(e) if backend == Backend::Postgres => eprintln!("NOTICE: PostgreSQL skipped: {e}"),
            Err(e) => {
                eprintln!("coopsync-bench: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if large_only {
        println!("{}", bench::large_document_table(&reports, &sizes));
    } else if seed_only {
        println!("{}", bench::seed_table(&reports, &sizes));
    } else {
        println!("{}", bench::table(&reports, &sizes));
        println!("{}", coopsync_tests::workload::table(&rows));
        println!("{}", coopsync_tests::admin_bench::table(&admin));
    }
    std::process::ExitCode::SUCCESS
}
