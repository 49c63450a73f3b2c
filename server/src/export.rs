//! Exports of the projected tables as CSV or XLSX, limited to what the caller may see and
//! to the filters asked for, written a page of rows at a time into a `tabular::Sink` so
//! that memory stays flat whatever the row count.
//!
//! Rows come in key order (document id; for attendance, session then participant; serial
//! id for conflicts, flags and audit), each page a new query after the last key, with a
//! pooled connection held only for that query: a slow download never holds the pool.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::Deserialize;

use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{
        Database, DbConnection,
        schema::{
            attendance, audit_log, conflicts, cooperatives, documents, members, training_sessions,
            validation_flags,
        },
        write_transaction,
    },
    domain::{access::Role, scope::Scope},
    error::ApiError,
    tabular::{Column, Format, Kind, Sink, TabularError, Value, col},
};

pub use crate::tabular::neutralise_formula;

/// Rows per page read from the database.
const PAGE: i64 = 2_000;

/// The tables an admin can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    Cooperatives,
    Members,
    TrainingSessions,
    Attendance,
    Conflicts,
    ValidationFlags,
    /// National admins only.
    Audit,
}

impl Dataset {
    pub const ALL: [Dataset; 7] = [
        Dataset::Cooperatives,
        Dataset::Members,
        Dataset::TrainingSessions,
        Dataset::Attendance,
        Dataset::Conflicts,
        Dataset::ValidationFlags,
        Dataset::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Cooperatives => "cooperatives",
            Dataset::Members => "members",
            Dataset::TrainingSessions => "training_sessions",
            Dataset::Attendance => "attendance",
            Dataset::Conflicts => "conflicts",
            Dataset::ValidationFlags => "validation_flags",
            Dataset::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<Dataset> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// The filters of an export, as the query string gives them.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default) or `xlsx`.
    pub format: Option<String>,
    /// Only records of this province (within the caller's scope).
    pub province: Option<String>,
    /// Sessions and attendance of this programme (`think_coop`, `start_coop`,
    /// `follow_up`).
    pub programme: Option<String>,
    /// From this day (`YYYY-MM-DD`, inclusive): sessions and attendance by the session's
    /// scheduled date, conflicts and flags by when they were detected, audit by its time.
    pub from: Option<String>,
    /// Up to this day (`YYYY-MM-DD`, inclusive).
    pub to: Option<String>,
}

/// Checked filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub province: Option<String>,
    pub programme: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl Filter {
    /// Checks the query's filters (a date that is not `YYYY-MM-DD`, a range that ends
    /// before it starts: `400 invalid_query`).
    pub fn parse(
        province: Option<&str>,
        programme: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Filter, ApiError> {
        let day = |d: Option<&str>, what: &str| -> Result<Option<NaiveDate>, ApiError> {
            d.filter(|d| !d.is_empty())
                .map(|d| {
                    NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!("{what} must be a date YYYY-MM-DD"),
                        )
                    })
                })
                .transpose()
        };
        let (from, to) = (day(from, "from")?, day(to, "to")?);
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                "to must not be before from",
            ));
        }
        let text = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
        Ok(Filter {
            province: text(province),
            programme: text(programme),
            from,
            to,
        })
    }

    /// `from` as text, to compare with a `YYYY-MM-DD` column.
    pub fn first_day(&self) -> Option<String> {
        self.from.map(|d| d.format("%Y-%m-%d").to_string())
    }

    pub fn last_day(&self) -> Option<String> {
        self.to.map(|d| d.format("%Y-%m-%d").to_string())
    }

    /// The range as server times: from midnight of `from` to before midnight after `to`.
    fn start_time(&self) -> Option<NaiveDateTime> {
        self.from.and_then(|d| d.and_hms_opt(0, 0, 0))
    }

    fn until_time(&self) -> Option<NaiveDateTime> {
        self.to
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    }

    /// The filters, for the audit row.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "province": self.province, "programme": self.programme,
            "from": self.first_day(), "to": self.last_day(),
        })
    }
}

impl ExportQuery {
    pub fn format(&self) -> Result<Format, ApiError> {
        match self.format.as_deref() {
            None | Some("") => Ok(Format::Csv),
            Some(f) => Format::parse(f).ok_or_else(|| {
                ApiError::bad_request("invalid_query", "format must be csv or xlsx")
            }),
        }
    }

    pub fn filter(&self) -> Result<Filter, ApiError> {
        Filter::parse(
            self.province.as_deref(),
            self.programme.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
        )
    }
}

/// Who may export `dataset`: admins, and for the audit log national admins only.
pub fn authorize(principal: &Principal, dataset: Dataset) -> Result<(), ApiError> {
    match dataset {
        Dataset::Audit => principal.require_national_admin(),
        _ => principal.require_admin(),
    }
}

impl From<TabularError> for ApiError {
    fn from(e: TabularError) -> Self {
        ApiError::internal(e)
    }
}

/// Makes the sink once the columns are known.
pub type MakeSink<'a> =
    dyn FnMut(&[Column]) -> Result<Box<dyn Sink + Send>, TabularError> + Send + 'a;

/// Restricts a boxed query by its document key `$key` to the caller's scope (the one SQL
/// form of the rule), and the province asked. Each is its own sub-query: a boxed sub-query cannot run
/// on both backends.
macro_rules! place_filters {
    ($q:expr, $key:expr, $scope:expr, $f:expr) => {{
        let (scope, f): (&Scope, &Filter) = ($scope, $f);
        let mut q = $q;
        if !scope.all {
            q = q.filter(
                $key.eq_any(
                    documents::table
                        .select(documents::id)
                        .filter(crate::db::scope_condition!(scope)),
                ),
            );
        }
        if let Some(p) = &f.province {
            q = q.filter(
                $key.eq_any(
                    documents::table
                        .select(documents::id)
                        .filter(documents::province_code.eq(p.clone())),
                ),
            );
        }
        q
    }};
}

/// Restricts a boxed query by its session key `$key` to the programme and dates asked.
macro_rules! session_filters {
    ($q:expr, $key:expr, $f:expr) => {{
        let f: &Filter = $f;
        let mut q = $q;
        if let Some(p) = &f.programme {
            q = q.filter(
                $key.eq_any(
                    training_sessions::table
                        .select(training_sessions::id)
                        .filter(training_sessions::programme.eq(p.clone())),
                ),
            );
        }
        if let Some(d) = f.first_day() {
            q = q.filter(
                $key.eq_any(
                    training_sessions::table
                        .select(training_sessions::id)
                        .filter(training_sessions::scheduled_date.ge(d)),
                ),
            );
        }
        if let Some(d) = f.last_day() {
            q = q.filter(
                $key.eq_any(
                    training_sessions::table
                        .select(training_sessions::id)
                        .filter(training_sessions::scheduled_date.le(d)),
                ),
            );
        }
        q
    }};
}

/// Pages through `$table` in `$key` order, each page filtered by `$filter` (a closure
/// of the boxed query), writing the listed columns with their kinds.
macro_rules! export_table {
    ($db:expr, $make:expr, $table:ident, key = $key:ident : $kty:ty,
     filter = $filter:expr, post = $post:expr,
     [$($col:ident : $ty:ty => $kind:ident),+ $(,)?]) => {{
        let columns = [$(col(stringify!($col), Kind::$kind)),+];
        let mut sink = $make(&columns)?;
        let mut after: Option<$kty> = None;
        let mut count: u64 = 0;
        loop {
            #[allow(unused_parens)]
            let rows: Vec<($($ty,)+)> = {
                let mut conn = $db.get()?;
                let mut query = $table::table
                    .select(($($table::$col,)+))
                    .order($table::$key)
                    .limit(PAGE)
                    .into_boxed();
                if let Some(a) = after.clone() {
                    query = query.filter($table::$key.gt(a));
                }
                let query = $filter(query);
                query.load(&mut *conn)?
            };
            let last_page = (rows.len() as i64) < PAGE;
            for ($($col,)+) in rows {
                after = Some($key.clone());
                let mut values = vec![$(Value::from($col)),+];
                $post(&mut values);
                sink.row(&values)?;
                count += 1;
            }
            if last_page {
                break;
            }
        }
        sink.finish()?;
        count
    }};
}

/// Writes one dataset, as `principal` may see it and filtered by `filter`, into the sink
/// `make` returns; answers the number of rows.
pub fn write(
    db: &Database,
    principal: &Principal,
    dataset: Dataset,
    filter: &Filter,
    make: &mut MakeSink<'_>,
) -> Result<u64, ApiError> {
    authorize(principal, dataset)?;
    let scope = principal.actor().scope();
    let f = filter.clone();
    let national = principal.role == Role::NationalAdmin;
    let none = |_: &mut Vec<Value>| {};
    let rows = match dataset {
        Dataset::Cooperatives => export_table!(db, make, cooperatives, key = id: String,
            filter = |q: cooperatives::BoxedQuery<'static, _, _>| place_filters!(q, cooperatives::id, &scope, &f),
            post = none, [
            id: String => Text,
            name_khmer: Option<String> => Text,
            name_latin: Option<String> => Text,
            registration_number: Option<String> => Text,
            province_code: Option<String> => Text,
            district: Option<String> => Text,
            commune: Option<String> => Text,
            village: Option<String> => Text,
            status: Option<String> => Text,
            established_date: Option<String> => Date,
            updated_at: NaiveDateTime => Timestamp,
        ]),
        Dataset::Members => export_table!(db, make, members, key = id: String,
            filter = |q: members::BoxedQuery<'static, _, _>| place_filters!(q, members::id, &scope, &f),
            post = none, [
            id: String => Text,
            cooperative_id: Option<String> => Text,
            full_name_khmer: Option<String> => Text,
            name_latin: Option<String> => Text,
            sex: Option<String> => Text,
            year_of_birth: Option<i64> => Integer,
            phone: Option<String> => Text,
            province_code: Option<String> => Text,
            village: Option<String> => Text,
            role: Option<String> => Text,
            joined_date: Option<String> => Date,
            merged_into: Option<String> => Text,
            updated_at: NaiveDateTime => Timestamp,
        ]),
        Dataset::TrainingSessions => export_table!(db, make, training_sessions, key = id: String,
            filter = |q: training_sessions::BoxedQuery<'static, _, _>| {
                // Its own columns: a sub-query of the same table is not allowed.
                let mut q = place_filters!(q, training_sessions::id, &scope, &f);
                if let Some(p) = &f.programme {
                    q = q.filter(training_sessions::programme.eq(p.clone()));
                }
                if let Some(d) = f.first_day() {
                    q = q.filter(training_sessions::scheduled_date.ge(d));
                }
                if let Some(d) = f.last_day() {
                    q = q.filter(training_sessions::scheduled_date.le(d));
                }
                q
            },
            post = none, [
            id: String => Text,
            programme: Option<String> => Text,
            module: Option<String> => Text,
            cooperative_id: Option<String> => Text,
            group_name: Option<String> => Text,
            province_code: Option<String> => Text,
            location: Option<String> => Text,
            facilitators: String => Text,
            scheduled_date: Option<String> => Date,
            start_time: Option<String> => Text,
            end_time: Option<String> => Text,
            planned_hours: Option<f64> => Number,
            status: Option<String> => Text,
            updated_at: NaiveDateTime => Timestamp,
        ]),
        Dataset::Attendance => write_attendance(db, make, |q| {
            let q = place_filters!(q, attendance::session_id, &scope, &f);
            session_filters!(q, attendance::session_id, &f)
        })?,
        Dataset::Conflicts => export_table!(db, make, conflicts, key = id: i64,
            filter = |q: conflicts::BoxedQuery<'static, _, _>| {
                let q = place_filters!(q, conflicts::document_id, &scope, &f);
                let q = match f.start_time() { Some(t) => q.filter(conflicts::detected_at.ge(t)), None => q };
                match f.until_time() { Some(t) => q.filter(conflicts::detected_at.lt(t)), None => q }
            },
            post = |values: &mut Vec<Value>| if !national { redact_devices(&mut values[4]) }, [
            id: i64 => Integer,
            document_id: String => Text,
            field: String => Text,
            status: String => Text,
            candidates: String => Text,
            winner: String => Text,
            detected_at: NaiveDateTime => Timestamp,
            updated_at: NaiveDateTime => Timestamp,
            resolved_by: Option<String> => Text,
            resolved_at: Option<NaiveDateTime> => Timestamp,
            resolution: Option<String> => Text,
            resolution_change: Option<String> => Text,
        ]),
        Dataset::ValidationFlags => export_table!(db, make, validation_flags, key = id: i64,
            filter = |q: validation_flags::BoxedQuery<'static, _, _>| {
                let q = place_filters!(q, validation_flags::document_id, &scope, &f);
                let q = match f.start_time() { Some(t) => q.filter(validation_flags::detected_at.ge(t)), None => q };
                match f.until_time() { Some(t) => q.filter(validation_flags::detected_at.lt(t)), None => q }
            },
            post = none, [
            id: i64 => Integer,
            document_id: String => Text,
            code: String => Text,
            field: String => Text,
            message: String => Text,
            detected_at: NaiveDateTime => Timestamp,
            status: String => Text,
            accepted_by: Option<String> => Text,
            accepted_at: Option<NaiveDateTime> => Timestamp,
            accepted_value: Option<String> => Text,
            note: Option<String> => Text,
            fixed_at: Option<NaiveDateTime> => Timestamp,
            fixed_by_change: Option<String> => Text,
        ]),
        Dataset::Audit => export_table!(db, make, audit_log, key = id: i64,
            filter = |q: audit_log::BoxedQuery<'static, _, _>| {
                let q = match f.start_time() { Some(t) => q.filter(audit_log::occurred_at.ge(t)), None => q };
                match f.until_time() { Some(t) => q.filter(audit_log::occurred_at.lt(t)), None => q }
            },
            post = none, [
            id: i64 => Integer,
            occurred_at: NaiveDateTime => Timestamp,
            actor_user_id: Option<String> => Text,
            device_id: Option<String> => Text,
            action: String => Text,
            target_type: Option<String> => Text,
            target_id: Option<String> => Text,
            outcome: String => Text,
            request_id: Option<String> => Text,
            details: String => Text,
        ]),
    };
    Ok(rows)
}

type AttendanceQuery = attendance::BoxedQuery<'static, crate::db::DbBackend>;
type AttendanceRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<String>,
    Option<NaiveDateTime>,
);

/// Attendance pages by session (all of a page's sessions' entries at once, then sorted by
/// participant in byte order), so the order is the same on both backends whatever the
/// collation of the free-form participant ids.
fn write_attendance(
    db: &Database,
    make: &mut MakeSink<'_>,
    filter: impl Fn(AttendanceQuery) -> AttendanceQuery,
) -> Result<u64, ApiError> {
    let columns = [
        col("session_id", Kind::Text),
        col("participant_id", Kind::Text),
        col("member_id", Kind::Text),
        col("person_id", Kind::Text),
        col("name", Kind::Text),
        col("sex", Kind::Text),
        col("age", Kind::Integer),
        col("phone", Kind::Text),
        col("status", Kind::Text),
        col("hours", Kind::Number),
        col("recorded_by", Kind::Text),
        col("recorded_at", Kind::Timestamp),
    ];
    let mut sink = make(&columns)?;
    let mut after = String::new();
    let mut count = 0u64;
    loop {
        let mut conn = db.get()?;
        let sessions: Vec<String> = filter(
            attendance::table
                .filter(attendance::session_id.gt(after.clone()))
                .into_boxed(),
        )
        .select(attendance::session_id)
        .distinct()
        .order(attendance::session_id)
        .limit(PAGE / 20)
        .load(&mut *conn)?;
        let Some(last) = sessions.last().cloned() else {
            break;
        };
        let mut rows: Vec<AttendanceRow> = filter(
            attendance::table
                .filter(attendance::session_id.eq_any(sessions))
                .into_boxed(),
        )
        .select((
            attendance::session_id,
            attendance::participant_id,
            attendance::member_id,
            attendance::name,
            attendance::sex,
            attendance::age,
            attendance::phone,
            attendance::status,
            attendance::hours,
            attendance::recorded_by,
            attendance::recorded_at,
        ))
        .load(&mut *conn)?;
        // The person an entry counts for (the reports' rule): a member merged into
        // another is the survivor.
        let member_ids: Vec<&String> = rows.iter().filter_map(|r| r.2.as_ref()).collect();
        let mut survivors: std::collections::HashMap<String, String> = Default::default();
        for chunk in member_ids.chunks(500) {
            survivors.extend(
                members::table
                    .filter(members::id.eq_any(chunk))
                    .filter(members::merged_into.is_not_null())
                    .select((members::id, members::merged_into.assume_not_null()))
                    .load::<(String, String)>(&mut *conn)?,
            );
        }
        drop(conn);
        rows.sort_by(|a, b| {
            (a.0.as_bytes(), a.1.as_bytes()).cmp(&(b.0.as_bytes(), b.1.as_bytes()))
        });
        for (s, p, m, n, sex, age, phone, st, h, by, at) in rows {
            let person = m
                .as_ref()
                .map(|m| survivors.get(m).unwrap_or(m).clone())
                .unwrap_or_else(|| p.clone());
            sink.row(&[
                s.into(),
                p.into(),
                m.into(),
                person.into(),
                n.into(),
                sex.into(),
                age.into(),
                phone.into(),
                st.into(),
                h.into(),
                by.into(),
                at.into(),
            ])?;
            count += 1;
        }
        after = last;
    }
    sink.finish()?;
    Ok(count)
}

/// Device ids name other people's tablets (national admins' included): only national
/// admins get them in the conflicts' `candidates`; others see the user and the time.
fn redact_devices(cell: &mut Value) {
    let Value::Text(text) = cell else {
        return;
    };
    if let Ok(serde_json::Value::Array(mut values)) = serde_json::from_str(text) {
        for v in &mut values {
            if let Some(o) = v.as_object_mut() {
                o.remove("device_id");
            }
        }
        *text = serde_json::Value::Array(values).to_string();
    }
}

/// Records a download in the audit log before it starts (exports hold names and phone
/// numbers, so who took which file, with which filters, matters).
pub fn audit(
    conn: &mut DbConnection,
    principal: &Principal,
    what: &str,
    target_type: &str,
    format: Format,
    filter: &Filter,
) -> Result<(), ApiError> {
    write_transaction(conn, |conn| {
        AuditEvent {
            actor_user_id: Some(&principal.user_id),
            device_id: Some(&principal.device_id),
            action: "export",
            target_type: Some(target_type),
            target_id: Some(what),
            outcome: "success",
            request_id: principal.request_id.as_deref(),
            details: Some(serde_json::json!({
                "format": format.extension(), "filters": filter.to_json(),
            })),
        }
        .record(conn)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_name_round_trips() {
        for d in Dataset::ALL {
            assert_eq!(Dataset::parse(d.as_str()), Some(d));
        }
        assert_eq!(Dataset::parse("users"), None);
    }

    #[test]
    fn filters_are_checked() {
        assert!(Filter::parse(None, None, Some("2026-01-01"), Some("2026-12-31")).is_ok());
        for (from, to) in [("2026-13-01", "2026-12-31"), ("2026-02-01", "2026-01-31")] {
            let e = Filter::parse(None, None, Some(from), Some(to)).unwrap_err();
            assert_eq!(e.code(), "invalid_query");
        }
    }
}
