//! Import jobs of the API: an uploaded file is kept and checked in the background (the
//! dry run); an admin reads the report, then applies the same file, also in the
//! background, with its progress in the job. National admins only; each upload and each
//! apply is audited.

use automerge::ActorId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Kind, Plan, Report};
use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{Database, DbConnection, now, schema::import_jobs, utc, write_transaction},
    error::ApiError,
};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// The dry run is running.
    Checking,
    /// The dry run is done: read `report`, then apply.
    Checked,
    Applying,
    Applied,
    /// The file could not be read, or the job stopped on an error (see `report`).
    Failed,
    /// The server stopped while the job ran (no progress for 5 minutes); apply again
    /// (nothing is created twice).
    Interrupted,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Checking => "checking",
            JobStatus::Checked => "checked",
            JobStatus::Applying => "applying",
            JobStatus::Applied => "applied",
            JobStatus::Failed => "failed",
            JobStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        [
            JobStatus::Checking,
            JobStatus::Checked,
            JobStatus::Applying,
            JobStatus::Applied,
            JobStatus::Failed,
            JobStatus::Interrupted,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub kind: Kind,
    pub status: JobStatus,
    pub file_name: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Rows to go through in the current step (the file's rows while checking, the
    /// records to create while applying) and how many are done: the progress figure.
    pub total: i64,
    pub processed: i64,
    pub report: Report,
}

type JobRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    chrono::NaiveDateTime,
    chrono::NaiveDateTime,
    i64,
    i64,
    String,
);

/// The columns of a `JobRow`, in its order.
const COLUMNS: (
    import_jobs::id,
    import_jobs::kind,
    import_jobs::status,
    import_jobs::file_name,
    import_jobs::created_by,
    import_jobs::created_at,
    import_jobs::updated_at,
    import_jobs::total,
    import_jobs::processed,
    import_jobs::report,
) = (
    import_jobs::id,
    import_jobs::kind,
    import_jobs::status,
    import_jobs::file_name,
    import_jobs::created_by,
    import_jobs::created_at,
    import_jobs::updated_at,
    import_jobs::total,
    import_jobs::processed,
    import_jobs::report,
);

fn load(conn: &mut DbConnection, id: &str) -> Result<Option<Job>, ApiError> {
    let row: Option<JobRow> = import_jobs::table
        .find(id)
        .select(COLUMNS)
        .first(conn)
        .optional()?;
    row.map(to_job).transpose()
}

/// A running job writes its progress after every batch (a few seconds apart); one that
/// has not for `STALE` stopped with its server process, and is shown (and may be applied
/// again) as `interrupted`. Not marked at start-up: another server process on the same
/// database may be running it.
const STALE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

fn seen_as(status: JobStatus, updated_at: chrono::NaiveDateTime) -> JobStatus {
    match status {
        JobStatus::Checking | JobStatus::Applying if now() - updated_at > STALE => {
            JobStatus::Interrupted
        }
        other => other,
    }
}

fn to_job(r: JobRow) -> Result<Job, ApiError> {
    let (id, kind, status, file_name, created_by, created_at, updated_at, total, processed, report) =
        r;
    let bad = |what: &str| ApiError::internal(format!("import job {id}: {what} does not decode"));
    let status = JobStatus::parse(&status).ok_or_else(|| bad("status"))?;
    Ok(Job {
        kind: Kind::parse(&kind).ok_or_else(|| bad("kind"))?,
        status: seen_as(status, updated_at),
        report: if report == "{}" {
            Report::default()
        } else {
            serde_json::from_str::<Report>(&report).map_err(|_| bad("report"))?
        },
        id,
        file_name,
        created_by,
        created_at: utc(created_at),
        updated_at: utc(updated_at),
        total,
        processed,
    })
}

fn set(
    conn: &mut DbConnection,
    id: &str,
    status: JobStatus,
    total: i64,
    processed: i64,
    report: Option<&Report>,
) -> Result<(), ApiError> {
    let report = match report {
        Some(r) => serde_json::to_string(r).map_err(ApiError::internal)?,
        None => import_jobs::table
            .find(id)
            .select(import_jobs::report)
            .first::<String>(conn)?,
    };
    write_transaction(conn, |conn| {
        diesel::update(import_jobs::table.find(id))
            .set((
                import_jobs::status.eq(status.as_str()),
                import_jobs::total.eq(total),
                import_jobs::processed.eq(processed),
                import_jobs::report.eq(report),
                import_jobs::updated_at.eq(now()),
            ))
            .execute(conn)
    })?;
    Ok(())
}

fn audit(
    conn: &mut DbConnection,
    principal: &Principal,
    action: &str,
    id: &str,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    write_transaction(conn, |conn| {
        AuditEvent {
            actor_user_id: Some(&principal.user_id),
            device_id: Some(&principal.device_id),
            action,
            target_type: Some("import"),
            target_id: Some(id),
            outcome: "success",
            request_id: principal.request_id.as_deref(),
            details: Some(details),
        }
        .record(conn)
    })?;
    Ok(())
}

/// Keeps the file and starts its dry run; answers the job (status `checking`).
pub fn start(
    db: &Database,
    principal: &Principal,
    kind: Kind,
    file_name: Option<String>,
    file: Vec<u8>,
) -> Result<Job, ApiError> {
    principal.require_national_admin()?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut conn = db.get()?;
    let at = now();
    let bytes = file.len();
    write_transaction(&mut conn, |conn| {
        diesel::insert_into(import_jobs::table)
            .values((
                import_jobs::id.eq(&id),
                import_jobs::kind.eq(kind.as_str()),
                import_jobs::status.eq(JobStatus::Checking.as_str()),
                import_jobs::file_name.eq(&file_name),
                import_jobs::file.eq(&file),
                import_jobs::created_by.eq(&principal.user_id),
                import_jobs::created_at.eq(at),
                import_jobs::updated_at.eq(at),
            ))
            .execute(conn)
    })?;
    audit(
        &mut conn,
        principal,
        "import.upload",
        &id,
        serde_json::json!({"kind": kind.as_str(), "bytes": bytes}),
    )?;
    let job = load(&mut conn, &id)?.ok_or(ApiError::NotFound("import"))?;
    drop(conn);
    let (db, job_id) = (db.clone(), id.clone());
    std::thread::spawn(move || {
        if let Err(e) = run_check(&db, &job_id, kind, &file) {
            tracing::error!(job = %job_id, error = %e, "import check failed");
            if let Ok(mut conn) = db.get() {
                let _ = set(&mut conn, &job_id, JobStatus::Failed, 0, 0, None);
            }
        }
    });
    Ok(job)
}

fn run_check(db: &Database, id: &str, kind: Kind, file: &[u8]) -> Result<(), ApiError> {
    let mut conn = db.get()?;
    let plan = super::check(&mut conn, kind, file)?;
    let status = if plan.report.unreadable() {
        JobStatus::Failed
    } else {
        JobStatus::Checked
    };
    let rows = plan.report.rows as i64;
    set(&mut conn, id, status, rows, rows, Some(&plan.report))
}

pub fn get(conn: &mut DbConnection, principal: &Principal, id: &str) -> Result<Job, ApiError> {
    principal.require_national_admin()?;
    load(conn, id)?.ok_or(ApiError::NotFound("import"))
}

/// The latest jobs, newest first.
pub fn list(conn: &mut DbConnection, principal: &Principal) -> Result<Vec<Job>, ApiError> {
    principal.require_national_admin()?;
    let rows: Vec<JobRow> = import_jobs::table
        .select(COLUMNS)
        .order((import_jobs::created_at.desc(), import_jobs::id))
        .limit(50)
        .load(conn)?;
    rows.into_iter().map(to_job).collect()
}

/// Applies a checked job's file (checked again first: the registry may have changed
/// since the dry run). `409 import_not_ready` while it is checking or applying, or when
/// the file could not be read.
pub fn apply(
    db: &Database,
    actor: &ActorId,
    principal: &Principal,
    id: &str,
) -> Result<Job, ApiError> {
    principal.require_national_admin()?;
    let mut conn = db.get()?;
    // Claimed by a compare-and-set on the status and time read, so of two applies of one
    // job (two admins, two server processes) exactly one starts it; the other is told it
    // is applying.
    let claimed = write_transaction(&mut conn, |conn| {
        let row: Option<(String, chrono::NaiveDateTime)> = import_jobs::table
            .find(id)
            .select((import_jobs::status, import_jobs::updated_at))
            .first(conn)
            .optional()?;
        let Some((raw, at)) = row else {
            return Ok::<_, ApiError>(None);
        };
        let status = JobStatus::parse(&raw)
            .map(|s| seen_as(s, at))
            .ok_or_else(|| ApiError::internal("import job status does not decode"))?;
        if !matches!(
            status,
            JobStatus::Checked | JobStatus::Applied | JobStatus::Interrupted
        ) {
            return Ok(Some(Err(status)));
        }
        let won = diesel::update(
            import_jobs::table
                .find(id)
                .filter(import_jobs::status.eq(&raw))
                .filter(import_jobs::updated_at.eq(at)),
        )
        .set((
            import_jobs::status.eq(JobStatus::Applying.as_str()),
            import_jobs::processed.eq(0i64),
            import_jobs::updated_at.eq(now()),
        ))
        .execute(conn)?;
        Ok(Some(if won == 1 {
            Ok(())
        } else {
            Err(JobStatus::Applying)
        }))
    })?;
    match claimed {
        None => return Err(ApiError::NotFound("import")),
        Some(Err(status)) => {
            return Err(ApiError::Conflict {
                code: "import_not_ready",
                message: format!(
                    "the import is {}: only a checked import can be applied",
                    status.as_str()
                ),
            });
        }
        Some(Ok(())) => {}
    }
    let (kind, file): (String, Vec<u8>) = import_jobs::table
        .find(id)
        .select((import_jobs::kind, import_jobs::file))
        .first(&mut conn)?;
    let kind = Kind::parse(&kind).ok_or_else(|| ApiError::internal("import kind"))?;
    audit(
        &mut conn,
        principal,
        "import.apply",
        id,
        serde_json::json!({"kind": kind.as_str()}),
    )?;
    let job = load(&mut conn, id)?.ok_or(ApiError::NotFound("import"))?;
    drop(conn);
    let (db, job_id, actor, user) = (
        db.clone(),
        id.to_string(),
        actor.clone(),
        principal.user_id.clone(),
    );
    std::thread::spawn(move || {
        if let Err(e) = run_apply(&db, &job_id, kind, &file, &actor, &user) {
            tracing::error!(job = %job_id, error = %e, "import apply failed");
            if let Ok(mut conn) = db.get() {
                let _ = set(&mut conn, &job_id, JobStatus::Failed, 0, 0, None);
            }
        }
    });
    Ok(job)
}

fn run_apply(
    db: &Database,
    id: &str,
    kind: Kind,
    file: &[u8],
    actor: &ActorId,
    user: &str,
) -> Result<(), ApiError> {
    let mut plan: Plan = {
        let mut conn = db.get()?;
        super::check(&mut conn, kind, file)?
    };
    let total = plan.report.to_create as i64;
    {
        let mut conn = db.get()?;
        set(
            &mut conn,
            id,
            JobStatus::Applying,
            total,
            0,
            Some(&plan.report),
        )?;
    }
    super::apply(db, &mut plan, actor, user, |done, _| {
        if let Ok(mut conn) = db.get() {
            let _ = write_transaction(&mut conn, |conn| {
                diesel::update(import_jobs::table.find(id))
                    .set((
                        import_jobs::processed.eq(done as i64),
                        import_jobs::updated_at.eq(now()),
                    ))
                    .execute(conn)
            });
        }
    })?;
    let mut conn = db.get()?;
    set(
        &mut conn,
        id,
        JobStatus::Applied,
        total,
        total,
        Some(&plan.report),
    )
}
