//! The `coopsync` command line: `serve`, `migrate`, `user add`, `projection rebuild`,
//! `backup`, `restored`.

use std::{io::BufRead, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    accounts::{self, CreateUserRequest},
    auth::password,
    config::Settings,
    db::Backend,
    domain::access::{Actor, Assignments, Role},
    startup::Application,
    telemetry,
};

#[derive(Debug, Parser)]
#[command(
    name = "coopsync",
    version,
    about = "Offline-first sync server for cooperative training records"
)]
pub struct Cli {
    /// Optional TOML settings file (also COOPSYNC_CONFIG). Environment variables
    /// COOPSYNC_* and DATABASE_URL override it.
    #[arg(long, global = true, env = "COOPSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, then serve HTTP until SIGTERM or Ctrl-C.
    Serve {
        /// Listen address (default 127.0.0.1:8080, also COOPSYNC_BIND).
        #[arg(long)]
        bind: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The relational projection of the synced records.
    Projection {
        #[command(subcommand)]
        command: ProjectionCommand,
    },
    /// Write a consistent copy of the SQLite database while the server runs (PostgreSQL:
    /// pg_dump, see docs/operations.md). The copy gets a history epoch of its own.
    Backup {
        /// The file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Import the existing registry from CSV or XLSX (columns: docs/admin-guide.md) as
    /// server-authored records that tablets pull; a dry run first, then apply.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Possible duplicate members (docs/duplicates.md).
    Duplicates {
        #[command(subcommand)]
        command: DuplicatesCommand,
    },
    /// Mark this database as restored from a backup (a new history epoch), so that every
    /// tablet pushes its changes again. `coopsync backup` copies need no such step.
    Restored,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import cooperatives (before their members).
    Cooperatives(ImportArgs),
    /// Import members; their cooperatives must be imported (or synced) first.
    Members(ImportArgs),
    /// Write a template to fill in (header `Khmer label (key)` and an example row).
    Template {
        #[arg(value_enum)]
        kind: ImportKindArg,
        /// The file to write: `.xlsx` or `.csv`.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The CSV (UTF-8) or XLSX file.
    pub file: PathBuf,
    /// Check every row and report; create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The national admin the records are imported for (named in their history).
    #[arg(long = "as", value_name = "USERNAME")]
    pub admin: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ImportKindArg {
    Cooperatives,
    Members,
}

#[derive(Debug, Subcommand)]
pub enum DuplicatesCommand {
    /// Score every member against its blocks, province by province, as detection does
    /// one member at a time: after an upgrade, or an import with detection off. Decisions
    /// (merged, not the same person) are kept.
    Rescan,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionCommand {
    /// Rebuild every projection table (and open conflicts) from the change log.
    Rebuild,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from the first line of standard input.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Province code, e.g. 07 (repeatable).
        #[arg(long = "province")]
        provinces: Vec<String>,
        /// Cooperative id, for enumerators (repeatable).
        #[arg(long = "cooperative")]
        cooperatives: Vec<String>,
        #[arg(long)]
        full_name: Option<String>,
        /// Read the password from standard input (required: passwords never go in arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum RoleArg {
    Enumerator,
    ProvincialAdmin,
    NationalAdmin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Enumerator => Role::Enumerator,
            RoleArg::ProvincialAdmin => Role::ProvincialAdmin,
            RoleArg::NationalAdmin => Role::NationalAdmin,
        }
    }
}

fn describe_database(settings: &Settings) -> String {
    let url = settings.database_url.expose();
    match Backend::of_url(url) {
        Backend::Sqlite => format!("SQLite file {url}"),
        // The URL may carry a password: show only the engine.
        Backend::Postgres => "PostgreSQL (DATABASE_URL)".to_string(),
    }
}

/// Progress on stderr. A closed stderr (a supervisor that stopped reading) must not turn
/// into a panic at shutdown, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// The whole `coopsync` program: parse arguments, run, print the error and set the exit
/// code. `main.rs` (and the test crate's copy of the binary) call only this.
pub fn main() -> std::process::ExitCode {
    tune_malloc();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            say!("coopsync: error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc malloc tuning, before any thread is started. An operator's own
/// `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` wins.
///
/// Arenas: glibc gives each thread that meets contention its own malloc arena; with the
/// actix workers and the blocking pool that fragmentation doubled the server's peak
/// memory (benchmark: 140 -> 61 MB seeding, 171 -> 95 MB in a burst, same throughput
/// with two arenas).
///
/// Large blocks: glibc's mmap threshold is dynamic: once a large mmapped block is freed,
/// blocks up to that size come from the heap instead and stay there when freed. Each
/// Argon2 hash takes 19 MiB, so after the first sign-in every hash grew the heap, and on
/// PostgreSQL (more threads waiting on the database, hashes landing in different places)
/// 100 sign-ins, 8 at once, left the server at 390 MB (issue 17: 857 MB in the outside
/// run); a fixed 4 MiB threshold maps and unmaps every such block: 58 MB peak, 39 MB
/// after (`scripts/signin-memory.sh`).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none();
        #[allow(
            unsafe_code,
            reason = "mallopt is a plain setter, called before any thread is started"
        )]
        // SAFETY: mallopt takes two integers and only changes allocator tuning.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
            if unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            }
        }
    }
}

/// One connection with migrations applied, for one-shot commands. Not the pool: its
/// background threads may still be opening a connection when the command returns, and
/// libpq's OpenSSL then races the exit handlers (seen: `user add` on PostgreSQL dying
/// with SIGSEGV now and then).
fn open_single(settings: &Settings) -> Result<crate::db::DbConnection, String> {
    let mut conn = crate::db::ConnectionFactory::new(settings.database_url.expose())
        .connect()
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    crate::db::run_migrations(&mut conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Runs the parsed command; the error string is printed by `main`.
pub fn run(cli: Cli) -> Result<(), String> {
    let mut settings = Settings::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    telemetry::init(settings.log_format, &settings.log_filter);
    crate::records::duplicates::set_enabled(settings.duplicate_detection);
    match cli.command {
        Command::Serve { bind } => {
            telemetry::install_panic_hook();
            if let Some(bind) = bind {
                settings.bind = bind;
            }
            say!(
                "coopsync {}: database {}",
                env!("CARGO_PKG_VERSION"),
                describe_database(&settings)
            );
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings).await.map_err(|e| e.to_string())?;
                app.serve(|addr| {
                    say!(
                        "coopsync: listening on http://{addr} (API docs at /api/v1/docs/); Ctrl-C or SIGTERM stops it"
                    );
                    tracing::info!(port = addr.port(), "server started");
                })
                .await
                .map_err(|e| e.to_string())?;
                say!("coopsync: stopped");
                Ok(())
            })
        }
        Command::Migrate => {
            say!("coopsync: migrating {}", describe_database(&settings));
            let factory = crate::db::ConnectionFactory::new(settings.database_url.expose());
            let mut conn = factory
                .connect()
                .map_err(|e| format!("cannot connect: {e}"))?;
            let applied = crate::db::run_migrations(&mut conn).map_err(|e| e.to_string())?;
            if applied.is_empty() {
                say!("coopsync: database is up to date");
            } else {
                for v in &applied {
                    say!("  applied {v}");
                }
                say!("coopsync: {} migration(s) applied", applied.len());
            }
            Ok(())
        }
        Command::Projection {
            command: ProjectionCommand::Rebuild,
        } => {
            say!(
                "coopsync: rebuilding the projection of {}",
                describe_database(&settings)
            );
            let mut conn = open_single(&settings)?;
            let started = std::time::Instant::now();
            let mut last_report = std::time::Instant::now();
            let report = crate::records::projection::rebuild(&mut conn, |done, total| {
                if done == total || last_report.elapsed().as_secs() >= 2 {
                    last_report = std::time::Instant::now();
                    say!("  {done}/{total} documents");
                }
            })
            .map_err(|e| e.to_string())?;
            for (id, why) in &report.from_snapshot {
                say!("  document {id}: projected from its stored snapshot ({why})");
            }
            for (id, why) in &report.skipped {
                say!("  document {id}: NOT projected ({why})");
            }
            say!(
                "coopsync: projection rebuilt from the change log: {} documents in {:.1} s ({} from their snapshot, {} skipped)",
                report.total,
                started.elapsed().as_secs_f64(),
                report.from_snapshot.len(),
                report.skipped.len()
            );
            if report.skipped.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} document(s) could not be projected; the rest were",
                    report.skipped.len()
                ))
            }
        }
        Command::Duplicates {
            command: DuplicatesCommand::Rescan,
        } => {
            say!(
                "coopsync: looking for possible duplicates in {}",
                describe_database(&settings)
            );
            let mut conn = open_single(&settings)?;
            let started = std::time::Instant::now();
            let report = crate::db::write_transaction(&mut conn, |conn| {
                crate::records::duplicates::rescan(conn, |done, total| {
                    if done == total || done % 5 == 0 {
                        say!("  {done}/{total} provinces");
                    }
                })
            })
            .map_err(|e| e.to_string())?;
            say!(
                "coopsync: {} members in {} provinces, {} pairs compared, {} possible duplicates ({} new or proposed again, {} withdrawn; blocking keys written for {} members) in {:.1} s",
                report.members,
                report.provinces,
                report.compared,
                report.pairs,
                report.proposed,
                report.withdrawn,
                report.keys_written,
                started.elapsed().as_secs_f64()
            );
            say!(
                "coopsync: {} walk-ins (attendance of people with no member record), {} with a member they may be; {} withdrawn",
                report.walk_ins.walk_ins,
                report.walk_ins.with_candidates,
                report.walk_ins.withdrawn
            );
            Ok(())
        }
        Command::Backup { out } => {
            say!(
                "coopsync: backing up {} to {}",
                describe_database(&settings),
                out.display()
            );
            let started = std::time::Instant::now();
            let bytes = crate::backup::backup_sqlite(settings.database_url.expose(), &out)
                .map_err(|e| e.to_string())?;
            say!(
                "coopsync: backup written: {bytes} bytes in {:.1} s; serve it with DATABASE_URL={}",
                started.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(())
        }
        Command::Import { command } => run_import(&settings, command),
        Command::Restored => {
            let mut conn = open_single(&settings)?;
            let epoch = crate::backup::new_epoch(&mut conn).map_err(|e| e.to_string())?;
            say!(
                "coopsync: {} marked as restored (history epoch {epoch}): tablets will push their changes again",
                describe_database(&settings)
            );
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    role,
                    provinces,
                    cooperatives,
                    full_name,
                    password_stdin: _,
                },
        } => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
            let password = line.trim_end_matches(['\n', '\r']).to_string();
            password::check_policy(&password).map_err(|_| {
                format!(
                    "the password must have at least {} characters (and at most {})",
                    password::MIN_PASSWORD_LEN,
                    password::MAX_PASSWORD_LEN
                )
            })?;
            say!("coopsync: opening {}", describe_database(&settings));
            let mut conn = open_single(&settings)?;
            let hash = password::hash_blocking(&password).map_err(|e| e.to_string())?;
            let req = CreateUserRequest {
                username,
                password: String::new(),
                role: role.into(),
                full_name,
                provinces,
                cooperatives,
            };
            // The command line is trusted like a national admin: whoever runs it owns the
            // database file or its credentials.
            let actor = Actor {
                user_id: "cli".into(),
                role: Role::NationalAdmin,
                assignments: Assignments::default(),
            };
            let view = accounts::create_user(&mut conn, &actor, &req, &hash, None).map_err(
                |e| match e {
                    crate::error::ApiError::Validation(fields) => fields
                        .iter()
                        .map(|f| format!("{}: {}", f.field, f.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                    other => other.to_string(),
                },
            )?;
            println!(
                "created user {} ({}) with id {}",
                view.user.username,
                view.role.as_str(),
                view.user.id
            );
            Ok(())
        }
    }
}

fn run_import(settings: &Settings, command: ImportCommand) -> Result<(), String> {
    use crate::import::{self, Kind};
    let (kind, args) = match command {
        ImportCommand::Cooperatives(a) => (Kind::Cooperatives, a),
        ImportCommand::Members(a) => (Kind::Members, a),
        ImportCommand::Template { kind, out } => {
            let kind = match kind {
                ImportKindArg::Cooperatives => Kind::Cooperatives,
                ImportKindArg::Members => Kind::Members,
            };
            let format = match out.extension().and_then(|e| e.to_str()) {
                Some("csv") => crate::tabular::Format::Csv,
                _ => crate::tabular::Format::Xlsx,
            };
            let file = std::fs::File::create_new(&out)
                .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
            import::template(kind, format, file).map_err(|e| e.to_string())?;
            say!("coopsync: template written to {}", out.display());
            return Ok(());
        }
    };
    let bytes = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    if bytes.len() > settings.import_file_limit {
        return Err(format!(
            "the file is larger than import_file_limit ({} bytes)",
            settings.import_file_limit
        ));
    }
    let mut conn = open_single(settings)?;
    let admin = accounts::national_admin_id(&mut conn, &args.admin).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let mut plan = import::check(&mut conn, kind, &bytes).map_err(|e| e.to_string())?;
    print_report(&plan.report);
    if plan.report.unreadable() {
        return Err("the file cannot be imported".into());
    }
    say!(
        "coopsync: checked {} rows in {:.1} s: {} valid ({} new, {} already imported), {} with errors, {} possible duplicates",
        plan.report.rows,
        started.elapsed().as_secs_f64(),
        plan.report.valid,
        plan.report.to_create,
        plan.report.existing,
        plan.report.failed,
        plan.report.possible_duplicates.len()
    );
    if args.dry_run {
        say!("coopsync: dry run: nothing was created");
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(plan.report.to_create);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "  {bar:40} {pos}/{len} records, {per_sec}, {eta} left",
        )
        .map_err(|e| e.to_string())?,
    );
    // The command line's own actor: never shared with a running server's.
    let actor = automerge::ActorId::random();
    let started = std::time::Instant::now();
    import::apply(&mut conn, &mut plan, &actor, &admin, |done, _| {
        bar.set_position(done)
    })
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    crate::db::write_transaction(&mut conn, |conn| {
        crate::audit::AuditEvent {
            actor_user_id: Some(&admin),
            device_id: None,
            action: "import.apply",
            target_type: Some("import"),
            target_id: Some(kind.as_str()),
            outcome: "success",
            request_id: None,
            details: Some(serde_json::json!({
                "kind": kind.as_str(), "via": "cli", "rows": plan.report.rows,
                "created": plan.report.created, "existing": plan.report.existing,
                "failed": plan.report.failed,
            })),
        }
        .record(conn)
    })
    .map_err(|e: diesel::result::Error| e.to_string())?;
    say!(
        "coopsync: created {} {} in {:.1} s ({} already there, {} rows failed)",
        plan.report.created,
        kind.as_str(),
        started.elapsed().as_secs_f64(),
        plan.report.existing,
        plan.report.failed
    );
    Ok(())
}

/// Every failed row (line, column, code, message) and possible duplicate, on stderr.
fn print_report(report: &crate::import::Report) {
    for (line, errors) in crate::import::errors_by_line(report) {
        for e in errors {
            let at = if line == 0 {
                "file".to_string()
            } else {
                format!("line {line}")
            };
            say!(
                "  {at}{}: {} ({})",
                e.column
                    .as_deref()
                    .map(|c| format!(", {c}"))
                    .unwrap_or_default(),
                e.message,
                e.code
            );
        }
    }
    for d in &report.possible_duplicates {
        say!(
            "  line {}: possible duplicate of {} ({})",
            d.line,
            d.like,
            d.reason
        );
    }
    if !report.ignored_columns.is_empty() {
        say!("  ignored columns: {}", report.ignored_columns.join(", "));
    }
}
