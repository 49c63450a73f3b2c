//! `coopsync-sim`: drives N simulated tablets through a training day against a running
//! coopsync server over HTTP and prints what it did.
//!
//! ```text
//! COOPSYNC_SIM_ADMIN_PASSWORD=... coopsync-sim --server http://127.0.0.1:8080 \
//!     --admin admin --tablets 20 --members 30 --province 07
//! ```

use clap::Parser;
use coopsync_tests::sim::{SimConfig, run};

#[derive(Parser)]
#[command(
    name = "coopsync-sim",
    about = "Simulated tablets doing a training day's work"
)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A national admin account (its password from COOPSYNC_SIM_ADMIN_PASSWORD).
    #[arg(long)]
    admin: String,
    #[arg(long, default_value_t = 10)]
    tablets: usize,
    #[arg(long, default_value_t = 30)]
    members: usize,
    #[arg(long, default_value = "07")]
    province: String,
    /// Prefix of the enumerator usernames created for the tablets.
    #[arg(long, default_value = "sim.enum")]
    user_prefix: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let Ok(password) = std::env::var("COOPSYNC_SIM_ADMIN_PASSWORD") else {
        eprintln!("coopsync-sim: set COOPSYNC_SIM_ADMIN_PASSWORD to the admin's password");
        return std::process::ExitCode::FAILURE;
    };
    let cfg = SimConfig {
        base_url: args.server.trim_end_matches('/').to_string(),
        admin_username: args.admin,
        admin_password: password,
        tablets: args.tablets,
        members_per_tablet: args.members,
        province: args.province,
        user_prefix: args.user_prefix,
    };
    match run(&cfg) {
        Ok(r) => {
            println!(
                "{} tablets, {} documents, {} changes pushed in {} requests, {} rejected; \
                 {} bytes up, {} bytes down; {:.2} s",
                r.tablets,
                r.documents,
                r.changes_pushed,
                r.requests,
                r.rejected,
                r.bytes_up,
                r.bytes_down,
                r.elapsed.as_secs_f64()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coopsync-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
