//! The duplicate rules' evaluation (docs/duplicates.md, "How well the rules do"): a
//! generated, labelled registry (fixed seed), scored with the server's blocking and
//! scoring; prints the precision/recall curve and exits non-zero when the default
//! threshold falls below precision 0.95 or recall 0.90 (CI runs it).
//!
//! ```text
//! target/release/coopsync-dedup-eval                 # 5,000 members, seed 20261201
//! target/release/coopsync-dedup-eval --members 60000 --seed 7 --examples
//! ```

use coopsync_tests::dedup_eval;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let members = value("--members", 5_000) as usize;
    let seed = value("--seed", 20_261_201);
    let started = std::time::Instant::now();
    let set = dedup_eval::generate(members, seed);
    let eval = dedup_eval::evaluate(&set);
    println!("{}", eval.table());
    if args.iter().any(|a| a == "--examples") {
        for e in &eval.examples {
            println!("{e}");
        }
    }
    let p = eval.at_default;
    println!(
        "default threshold {}: precision {:.3}, recall {:.3} (floors 0.95 / 0.90), seed {seed}, {:.2} s",
        p.threshold,
        p.precision,
        p.recall,
        started.elapsed().as_secs_f64()
    );
    if p.precision >= 0.95 && p.recall >= 0.90 && eval.true_pairs >= 300.min(members / 16) {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("coopsync-dedup-eval: below the quality floors");
        std::process::ExitCode::FAILURE
    }
}
