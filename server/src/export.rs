//! Exports of the projected tables as CSV, limited to what the caller may see.
//!
//! Rows are sorted in Rust by byte order, not by the database's collation, so that the
//! same data gives the same file on SQLite and on PostgreSQL whatever the locale.

use std::fmt::Write as _;

use chrono::{NaiveDateTime, SecondsFormat};
use diesel::prelude::*;

use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{
        DbConnection,
        schema::{
            attendance, conflicts, cooperatives, documents, members, training_sessions,
            validation_flags,
        },
        write_transaction,
    },
    error::ApiError,
    sync::pull::Scope,
};

/// The tables an admin can export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    Cooperatives,
    Members,
    TrainingSessions,
    Attendance,
    Conflicts,
    ValidationFlags,
}

impl Dataset {
    pub const ALL: [Dataset; 6] = [
        Dataset::Cooperatives,
        Dataset::Members,
        Dataset::TrainingSessions,
        Dataset::Attendance,
        Dataset::Conflicts,
        Dataset::ValidationFlags,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Cooperatives => "cooperatives",
            Dataset::Members => "members",
            Dataset::TrainingSessions => "training_sessions",
            Dataset::Attendance => "attendance",
            Dataset::Conflicts => "conflicts",
            Dataset::ValidationFlags => "validation_flags",
        }
    }

    pub fn parse(s: &str) -> Option<Dataset> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One exported table: a header and rows of already formatted cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// RFC 4180 CSV with CRLF line ends, preceded by a UTF-8 byte order mark so that
    /// spreadsheet programs read Khmer text as UTF-8.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("\u{feff}");
        write_record(&mut out, self.columns.iter().copied());
        for row in &self.rows {
            write_record(&mut out, row.iter().map(String::as_str));
        }
        out
    }
}

/// A cell that a spreadsheet would run as a formula (OWASP CSV injection: a first
/// character of `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`, which
/// Excel and LibreOffice show as text and hide; a plain number such as `-2` is left as it
/// is. Tablet-entered text reaches these cells.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    // A tab or carriage return never parses as a number, so they are always neutralised.
    let plain_number = cell.parse::<f64>().is_ok_and(f64::is_finite);
    if risky && !plain_number {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

fn write_record<'a>(out: &mut String, cells: impl Iterator<Item = &'a str>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = &*neutralise_formula(cell);
        if cell.contains([',', '"', '\n', '\r']) {
            let _ = write!(out, "\"{}\"", cell.replace('"', "\"\""));
        } else {
            out.push_str(cell);
        }
    }
    out.push_str("\r\n");
}

/// How one stored value is written in a cell; absent values are empty cells.
trait Cell {
    fn cell(self) -> String;
}

impl Cell for String {
    fn cell(self) -> String {
        self
    }
}

impl Cell for i64 {
    fn cell(self) -> String {
        self.to_string()
    }
}

impl Cell for f64 {
    fn cell(self) -> String {
        self.to_string()
    }
}

impl Cell for NaiveDateTime {
    fn cell(self) -> String {
        crate::db::utc(self).to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl<T: Cell> Cell for Option<T> {
    fn cell(self) -> String {
        self.map(Cell::cell).unwrap_or_default()
    }
}

/// Loads `columns` of `table`, restricted to documents in `scope` through `doc_key`,
/// formatted and sorted by the first `sort_by` cells.
macro_rules! load_table {
    ($conn:expr, $scope:expr, $table:ident, $doc_key:ident, sort_by = $sort:expr,
     [$($col:ident : $ty:ty),+ $(,)?]) => {{
        let scope: &Scope = $scope;
        let mut query = $table::table.select(($($table::$col,)+)).into_boxed();
        if !scope.all {
            query = query.filter(
                $table::$doc_key.eq_any(
                    documents::table
                        .select(documents::id)
                        .filter(crate::db::scope_condition!(scope)),
                ),
            );
        }
        #[allow(unused_parens)]
        let loaded: Vec<($($ty,)+)> = query.load($conn)?;
        let mut rows: Vec<Vec<String>> = loaded
            .into_iter()
            .map(|($($col,)+)| vec![$(Cell::cell($col)),+])
            .collect();
        let sort: usize = $sort;
        rows.sort_by(|a, b| a[..sort].cmp(&b[..sort]));
        Table { columns: vec![$(stringify!($col)),+], rows }
    }};
}

/// Reads one dataset as the caller may see it. National admins see everything,
/// provincial admins the records of their provinces; enumerators cannot export.
pub fn read(
    conn: &mut DbConnection,
    principal: &Principal,
    dataset: Dataset,
) -> Result<Table, ApiError> {
    principal.require_admin()?;
    let scope = principal.actor().scope();
    let table = match dataset {
        Dataset::Cooperatives => load_table!(conn, &scope, cooperatives, id, sort_by = 1, [
            id: String,
            name_khmer: Option<String>,
            name_latin: Option<String>,
            registration_number: Option<String>,
            province_code: Option<String>,
            district: Option<String>,
            commune: Option<String>,
            village: Option<String>,
            status: Option<String>,
            established_date: Option<String>,
            updated_at: NaiveDateTime,
        ]),
        Dataset::Members => load_table!(conn, &scope, members, id, sort_by = 1, [
            id: String,
            cooperative_id: Option<String>,
            full_name_khmer: Option<String>,
            name_latin: Option<String>,
            sex: Option<String>,
            year_of_birth: Option<i64>,
            phone: Option<String>,
            province_code: Option<String>,
            village: Option<String>,
            role: Option<String>,
            joined_date: Option<String>,
            updated_at: NaiveDateTime,
        ]),
        Dataset::TrainingSessions => {
            load_table!(conn, &scope, training_sessions, id, sort_by = 1, [
                id: String,
                programme: Option<String>,
                module: Option<String>,
                cooperative_id: Option<String>,
                group_name: Option<String>,
                province_code: Option<String>,
                location: Option<String>,
                facilitators: String,
                scheduled_date: Option<String>,
                start_time: Option<String>,
                end_time: Option<String>,
                planned_hours: Option<f64>,
                status: Option<String>,
                updated_at: NaiveDateTime,
            ])
        }
        Dataset::Attendance => load_table!(conn, &scope, attendance, session_id, sort_by = 2, [
            session_id: String,
            participant_id: String,
            member_id: Option<String>,
            name: Option<String>,
            sex: Option<String>,
            age: Option<i64>,
            phone: Option<String>,
            status: Option<String>,
            hours: Option<f64>,
            recorded_by: Option<String>,
            recorded_at: Option<NaiveDateTime>,
        ]),
        // The serial id comes last in the sort so that the order does not depend on
        // the order in which one backend happened to insert.
        Dataset::Conflicts => load_table!(conn, &scope, conflicts, document_id, sort_by = 3, [
            document_id: String,
            field: String,
            status: String,
            id: i64,
            candidates: String,
            winner: String,
            detected_at: NaiveDateTime,
            updated_at: NaiveDateTime,
        ]),
        Dataset::ValidationFlags => {
            load_table!(conn, &scope, validation_flags, document_id, sort_by = 4, [
                document_id: String,
                code: String,
                field: String,
                message: String,
                id: i64,
                detected_at: NaiveDateTime,
                status: String,
                accepted_by: Option<String>,
                note: Option<String>,
                fixed_by_change: Option<String>,
            ])
        }
    };
    Ok(redact_devices(principal, dataset, table))
}

/// Device ids name other people's tablets (national admins' included): only national
/// admins get them in the conflicts' `candidates`; others see the user and the time.
fn redact_devices(principal: &Principal, dataset: Dataset, mut table: Table) -> Table {
    if dataset != Dataset::Conflicts || principal.role == crate::domain::access::Role::NationalAdmin
    {
        return table;
    }
    let Some(col) = table.columns.iter().position(|c| *c == "candidates") else {
        return table;
    };
    for row in &mut table.rows {
        if let Ok(serde_json::Value::Array(mut values)) = serde_json::from_str(&row[col]) {
            for v in &mut values {
                if let Some(o) = v.as_object_mut() {
                    o.remove("device_id");
                }
            }
            row[col] = serde_json::Value::Array(values).to_string();
        }
    }
    table
}

/// Reads a dataset and records the download in the audit log (exports hold names and
/// phone numbers, so who took which file matters).
pub fn export(
    conn: &mut DbConnection,
    principal: &Principal,
    dataset: Dataset,
) -> Result<Table, ApiError> {
    let table = read(conn, principal, dataset)?;
    write_transaction(conn, |conn| {
        AuditEvent {
            actor_user_id: Some(&principal.user_id),
            device_id: Some(&principal.device_id),
            action: "export",
            target_type: Some("dataset"),
            target_id: Some(dataset.as_str()),
            outcome: "success",
            request_id: principal.request_id.as_deref(),
            details: Some(serde_json::json!({ "rows": table.rows.len() })),
        }
        .record(conn)
    })?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_quoting() {
        let table = Table {
            columns: vec!["a", "b"],
            rows: vec![
                vec!["plain".into(), "with, comma".into()],
                vec!["say \"hi\"".into(), "two\nlines".into()],
                vec!["សហករណ៍".into(), String::new()],
            ],
        };
        assert_eq!(
            table.to_csv(),
            "\u{feff}a,b\r\nplain,\"with, comma\"\r\n\"say \"\"hi\"\"\",\"two\nlines\"\r\n\
             សហករណ៍,\r\n"
        );
    }

    #[test]
    fn cells_that_would_run_as_formulas_are_neutralised() {
        for risky in [
            "=HYPERLINK(\"http://x\",\"y\")",
            "@SUM(A1)",
            "+cmd|' /C calc'!A0",
            "-2+3",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(neutralise_formula(risky), format!("'{risky}"), "{risky:?}");
        }
        for safe in ["-2", "+855", "-1.5", "សុខ", "a=b", ""] {
            assert_eq!(neutralise_formula(safe), safe, "{safe:?}");
        }
        let table = Table {
            columns: vec!["name"],
            rows: vec![vec!["=1+1".into()]],
        };
        assert_eq!(table.to_csv(), "\u{feff}name\r\n'=1+1\r\n");
    }

    #[test]
    fn every_dataset_name_round_trips() {
        for d in Dataset::ALL {
            assert_eq!(Dataset::parse(d.as_str()), Some(d));
        }
        assert_eq!(Dataset::parse("users"), None);
    }
}
