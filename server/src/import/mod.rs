//! Bulk import of the existing registry (cooperatives, then members) from CSV or XLSX:
//! read the file, check every row as a tablet's record is checked, derive each record's
//! id from a natural key (so a second import of the same file creates nothing), report,
//! and create the records as server changes through the one write path, in batches, so
//! that tablet syncs keep being served and tablets pull the records like any other.
//!
//! Used by `coopsync import` (cli.rs) and by the import jobs of the API (jobs.rs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;

use automerge::ActorId;
use calamine::{Data, Reader as _, Xlsx, open_workbook_from_rs};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sync_protocol::documents::{Cooperative, DocType, Member};
use utoipa::ToSchema;

use crate::{
    db::{
        Database, DbConnection,
        schema::{cooperatives, documents, members},
        write_transaction,
    },
    domain::matching::{self, Person},
    error::ApiError,
    records::{self, CommitError},
    tabular::{self, Column, Format, Kind as CellKind, Value},
};

pub mod jobs;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Cooperatives,
    Members,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "cooperatives" => Some(Kind::Cooperatives),
            "members" => Some(Kind::Members),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cooperatives => "cooperatives",
            Kind::Members => "members",
        }
    }

    pub fn fields(self) -> &'static [Field] {
        match self {
            Kind::Cooperatives => &COOPERATIVE_FIELDS,
            Kind::Members => &MEMBER_FIELDS,
        }
    }
}

/// One column of an import file: its key (the header, as in the exports), its Khmer
/// label (the template's header is `label (key)`; either alone is accepted too), and an
/// example value for the template.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub key: &'static str,
    pub khmer: &'static str,
    pub required: bool,
    pub example: &'static str,
}

const fn field(
    key: &'static str,
    khmer: &'static str,
    required: bool,
    example: &'static str,
) -> Field {
    Field {
        key,
        khmer,
        required,
        example,
    }
}

pub const COOPERATIVE_FIELDS: [Field; 9] = [
    field("registration_number", "លេខចុះបញ្ជី", false, "KPT-2019-014"),
    field("name_khmer", "ឈ្មោះសហគមន៍ (ខ្មែរ)", true, "សហគមន៍កសិកម្មអូរក្រាំង"),
    field(
        "name_latin",
        "ឈ្មោះសហគមន៍ (ឡាតាំង)",
        true,
        "Ou Krang Agricultural Cooperative",
    ),
    field("province_code", "លេខកូដខេត្ត", true, "07"),
    field("district", "ស្រុក", false, "Kampong Trach"),
    field("commune", "ឃុំ", false, "Kampong Trach Khang Kaeut"),
    field("village", "ភូមិ", false, "Prey Khmeng"),
    field("status", "ស្ថានភាព", true, "active"),
    field("established_date", "កាលបរិច្ឆេទបង្កើត", false, "2019-05-14"),
];

pub const MEMBER_FIELDS: [Field; 11] = [
    field(
        "cooperative_registration_number",
        "លេខចុះបញ្ជីសហគមន៍",
        false,
        "KPT-2019-014",
    ),
    field("cooperative_id", "លេខសម្គាល់សហគមន៍", false, ""),
    field("full_name_khmer", "ឈ្មោះពេញ (ខ្មែរ)", true, "សុខ ចាន់ថា"),
    field("name_latin", "ឈ្មោះ (ឡាតាំង)", false, "Sok Chanthea"),
    field("sex", "ភេទ", true, "female"),
    field("year_of_birth", "ឆ្នាំកំណើត", false, "1986"),
    field("phone", "លេខទូរស័ព្ទ", false, "012 345 678"),
    field("province_code", "លេខកូដខេត្ត", false, "07"),
    field("village", "ភូមិ", false, "Prey Khmeng"),
    field("role", "តួនាទី", true, "member"),
    field("joined_date", "កាលបរិច្ឆេទចូលជាសមាជិក", false, "2020-01-15"),
];

/// The namespace of the ids derived from natural keys (UUID version 5), fixed forever:
/// changing it would make a second import of the same file create every record again.
pub const ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c0b_5e2a_3f4d_4b8e_9a71_c2d3_e4f5_0617);

/// Rows created per transaction: small enough that a tablet's sync waits at most one
/// batch for the write lock.
pub const BATCH: usize = 100;

/// A row that cannot be imported, or a file that cannot be read (line 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    /// The line in the file (the header is line 1); 0 for the file as a whole.
    pub line: u64,
    pub column: Option<String>,
    pub code: String,
    pub message: String,
}

/// A row that looks like a record that exists, or like another row of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PossibleDuplicate {
    pub line: u64,
    /// The record it resembles, or `line:<n>` for another row of the file.
    pub like: String,
    pub reason: String,
}

/// What an import found and did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// Data rows read (the header not counted).
    pub rows: u64,
    /// Rows that pass every check.
    pub valid: u64,
    /// Valid rows whose record does not exist yet: what applying creates.
    pub to_create: u64,
    /// Valid rows whose record exists already (imported before): left as they are.
    pub existing: u64,
    pub failed: u64,
    /// Records created (0 for a dry run).
    pub created: u64,
    /// Columns of the file that are not import columns (ignored).
    pub ignored_columns: Vec<String>,
    pub errors: Vec<RowError>,
    pub possible_duplicates: Vec<PossibleDuplicate>,
}

impl Report {
    fn file_error(code: &str, message: impl Into<String>) -> Report {
        Report {
            failed: 0,
            errors: vec![RowError {
                line: 0,
                column: None,
                code: code.into(),
                message: message.into(),
            }],
            ..Report::default()
        }
    }

    /// Whether the file as a whole could not be read.
    pub fn unreadable(&self) -> bool {
        self.errors.iter().any(|e| e.line == 0)
    }
}

/// A row ready to create.
#[derive(Debug, Clone)]
enum Record {
    Cooperative(Cooperative),
    Member(Member),
}

#[derive(Debug, Clone)]
struct Planned {
    line: u64,
    id: String,
    record: Record,
}

/// The checked file: the report so far and what applying would create.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Kind,
    pub report: Report,
    rows: Vec<Planned>,
}

/// A file's cells: header and data rows with their line numbers.
struct Sheet {
    header: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
}

fn read_sheet(bytes: &[u8]) -> Result<Sheet, (String, String)> {
    let mut lines: Vec<(u64, Vec<String>)> = if bytes.starts_with(b"PK\x03\x04") {
        let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).map_err(|e| {
            (
                "unreadable_file".to_string(),
                format!("not a readable XLSX file: {e}"),
            )
        })?;
        let name = book.sheet_names().first().cloned().ok_or((
            "unreadable_file".to_string(),
            "the XLSX file has no sheet".to_string(),
        ))?;
        let range = book.worksheet_range(&name).map_err(|e| {
            (
                "unreadable_file".to_string(),
                format!("the first sheet cannot be read: {e}"),
            )
        })?;
        let first_row = range.start().map_or(0, |(r, _)| r as u64);
        range
            .rows()
            .enumerate()
            .map(|(i, r)| (first_row + i as u64 + 1, r.iter().map(cell_text).collect()))
            .collect()
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            (
                "unreadable_file".to_string(),
                "the file is neither XLSX nor UTF-8 CSV (save it as \"CSV UTF-8\")".to_string(),
            )
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut out = Vec::new();
        for record in reader.records() {
            let record = record
                .map_err(|e| ("unreadable_file".to_string(), format!("not valid CSV: {e}")))?;
            let line = record.position().map_or(0, |p| p.line());
            out.push((line, record.iter().map(str::to_string).collect()));
        }
        out
    };
    lines.retain(|(_, cells)| cells.iter().any(|c| !c.trim().is_empty()));
    if lines.is_empty() {
        return Err(("empty_file".into(), "the file has no header row".into()));
    }
    let (_, header) = lines.remove(0);
    Ok(Sheet {
        header,
        rows: lines,
    })
}

/// An XLSX cell as the text a CSV would hold: whole numbers without a decimal point,
/// dates as `YYYY-MM-DD`.
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => excel_day(d.as_f64()).unwrap_or_else(|| d.as_f64().to_string()),
        Data::DateTimeIso(s) => s.chars().take(10).collect(),
        Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

/// An Excel serial day (1900 system) as `YYYY-MM-DD`.
fn excel_day(serial: f64) -> Option<String> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1899, 12, 30)?;
    let day = epoch.checked_add_days(chrono::Days::new(serial.floor() as u64))?;
    Some(day.format("%Y-%m-%d").to_string())
}

/// Which import column each header cell names: `label (key)`, `key` or the Khmer label.
fn map_header(kind: Kind, header: &[String]) -> (Vec<Option<&'static Field>>, Vec<String>) {
    let mut ignored = Vec::new();
    let mapped = header
        .iter()
        .map(|h| {
            let h = h.trim();
            let key = h
                .rsplit_once('(')
                .and_then(|(_, k)| k.strip_suffix(')'))
                .map(str::trim);
            let found = kind
                .fields()
                .iter()
                .find(|f| Some(f.key) == key || f.key.eq_ignore_ascii_case(h) || f.khmer == h);
            if found.is_none() && !h.is_empty() {
                ignored.push(h.to_string());
            }
            found
        })
        .collect();
    (mapped, ignored)
}

/// Names as compared in natural keys: the duplicate rules' Khmer spelling (invisible
/// characters, spaces, subscript order), lower case.
pub fn fold(name: &str) -> String {
    matching::normalise_khmer(name).to_lowercase()
}

/// The id of an imported cooperative: from its registration number, else from its
/// province and Khmer name.
pub fn cooperative_id(c: &Cooperative) -> String {
    let key = match c
        .registration_number
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        Some(reg) => format!("cooperative/registration/{}", reg.to_uppercase()),
        None => format!(
            "cooperative/name/{}/{}",
            c.province_code.as_deref().unwrap_or(""),
            fold(c.name_khmer.as_deref().unwrap_or(""))
        ),
    };
    uuid::Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()
}

/// The id of an imported member: cooperative, Khmer name, year of birth and phone.
pub fn member_id(m: &Member) -> String {
    let key = format!(
        "member/{}/{}/{}/{}",
        m.cooperative_id.as_deref().unwrap_or(""),
        fold(m.full_name_khmer.as_deref().unwrap_or("")),
        m.year_of_birth.map(|y| y.to_string()).unwrap_or_default(),
        matching::phone_key(m.phone.as_deref().unwrap_or("")),
    );
    uuid::Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()
}

fn opt(cells: &HashMap<&'static str, String>, key: &str) -> Option<String> {
    cells
        .get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Reads and checks a file: every row's errors, duplicates, and what applying creates.
pub fn check(conn: &mut DbConnection, kind: Kind, bytes: &[u8]) -> Result<Plan, ApiError> {
    let sheet = match read_sheet(bytes) {
        Ok(s) => s,
        Err((code, message)) => {
            return Ok(Plan {
                kind,
                report: Report::file_error(&code, message),
                rows: Vec::new(),
            });
        }
    };
    let (mapped, ignored) = map_header(kind, &sheet.header);
    let mut report = Report {
        rows: sheet.rows.len() as u64,
        ignored_columns: ignored,
        ..Report::default()
    };
    let present: HashSet<&str> = mapped.iter().flatten().map(|f| f.key).collect();
    let missing: Vec<&str> = kind
        .fields()
        .iter()
        .filter(|f| f.required && !present.contains(f.key))
        .map(|f| f.key)
        .collect();
    let no_coop_column = kind == Kind::Members
        && !present.contains("cooperative_registration_number")
        && !present.contains("cooperative_id");
    if !missing.is_empty() || no_coop_column {
        let mut names = missing.join(", ");
        if no_coop_column {
            if !names.is_empty() {
                names.push_str(", ");
            }
            names.push_str("cooperative_registration_number or cooperative_id");
        }
        report.errors.push(RowError {
            line: 0,
            column: None,
            code: "missing_column".into(),
            message: format!("the header lacks required columns: {names}"),
        });
        return Ok(Plan {
            kind,
            report,
            rows: Vec::new(),
        });
    }
    let year = chrono::Datelike::year(&chrono::Utc::now()) as i64;
    // Cooperatives by registration number, for members' rows.
    let known_coops: Vec<(Option<String>, String)> = if kind == Kind::Members {
        cooperatives::table
            .select((cooperatives::registration_number, cooperatives::id))
            .load(conn)?
    } else {
        Vec::new()
    };
    let coop_ids: HashSet<&str> = known_coops.iter().map(|(_, id)| id.as_str()).collect();
    let coops_by_reg: HashMap<String, String> = known_coops
        .iter()
        .filter_map(|(r, id)| Some((r.as_deref()?.trim().to_uppercase(), id.clone())))
        .collect();
    let mut planned: Vec<Planned> = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    // Near-duplicates within the file: same folded name (and cooperative for members).
    let mut names: HashMap<String, u64> = HashMap::new();
    for (line, cells) in &sheet.rows {
        let line = *line;
        let values: HashMap<&'static str, String> = mapped
            .iter()
            .zip(cells)
            .filter_map(|(f, v)| Some((f.as_ref()?.key, v.clone())))
            .collect();
        let mut errors: Vec<RowError> = Vec::new();
        let err = |errors: &mut Vec<RowError>, column: &str, code: &str, message: String| {
            errors.push(RowError {
                line,
                column: Some(column.to_string()),
                code: code.to_string(),
                message,
            })
        };
        let (record, id, name_key) = match kind {
            Kind::Cooperatives => {
                let c = Cooperative {
                    name_khmer: opt(&values, "name_khmer"),
                    name_latin: opt(&values, "name_latin"),
                    registration_number: opt(&values, "registration_number"),
                    province_code: opt(&values, "province_code"),
                    district: opt(&values, "district"),
                    commune: opt(&values, "commune"),
                    village: opt(&values, "village"),
                    status: opt(&values, "status"),
                    established_date: opt(&values, "established_date"),
                };
                for f in c.validate() {
                    err(&mut errors, &f.field, &f.code, f.message);
                }
                let id = cooperative_id(&c);
                let name_key = format!(
                    "{}/{}",
                    c.province_code.as_deref().unwrap_or(""),
                    fold(c.name_khmer.as_deref().unwrap_or(""))
                );
                (Record::Cooperative(c), id, name_key)
            }
            Kind::Members => {
                let coop = match (
                    opt(&values, "cooperative_registration_number"),
                    opt(&values, "cooperative_id"),
                ) {
                    (Some(reg), _) => match coops_by_reg.get(&reg.to_uppercase()) {
                        Some(id) => Some(id.clone()),
                        None => {
                            err(
                                &mut errors,
                                "cooperative_registration_number",
                                "unknown_cooperative",
                                format!(
                                    "no cooperative is registered as {reg:?}: import the cooperatives first"
                                ),
                            );
                            None
                        }
                    },
                    (None, Some(id)) => {
                        let id = id.to_ascii_lowercase();
                        if !coop_ids.contains(id.as_str()) {
                            err(
                                &mut errors,
                                "cooperative_id",
                                "unknown_cooperative",
                                format!("no cooperative has the id {id:?}"),
                            );
                        }
                        Some(id)
                    }
                    (None, None) => {
                        err(
                            &mut errors,
                            "cooperative_registration_number",
                            "required",
                            "a member needs its cooperative's registration number or id".into(),
                        );
                        None
                    }
                };
                let year_of_birth = match opt(&values, "year_of_birth") {
                    None => None,
                    Some(y) => match y.parse::<i64>() {
                        Ok(y) => Some(y),
                        Err(_) => {
                            err(
                                &mut errors,
                                "year_of_birth",
                                "invalid_number",
                                format!("{y:?} is not a year"),
                            );
                            None
                        }
                    },
                };
                let m = Member {
                    cooperative_id: coop,
                    full_name_khmer: opt(&values, "full_name_khmer"),
                    name_latin: opt(&values, "name_latin"),
                    sex: opt(&values, "sex"),
                    year_of_birth,
                    phone: opt(&values, "phone"),
                    province_code: opt(&values, "province_code"),
                    village: opt(&values, "village"),
                    role: opt(&values, "role"),
                    joined_date: opt(&values, "joined_date"),
                    merged_into: None,
                };
                if m.cooperative_id.is_some() {
                    for f in m.validate(year) {
                        err(&mut errors, &f.field, &f.code, f.message);
                    }
                }
                let id = member_id(&m);
                let name_key = format!(
                    "{}/{}",
                    m.cooperative_id.as_deref().unwrap_or(""),
                    fold(m.full_name_khmer.as_deref().unwrap_or(""))
                );
                (Record::Member(m), id, name_key)
            }
        };
        if errors.is_empty()
            && let Some(first) = seen.get(&id)
        {
            err(
                &mut errors,
                "",
                "duplicate_row",
                format!("the same record as line {first} (same natural key)"),
            );
        }
        if !errors.is_empty() {
            report.failed += 1;
            report.errors.extend(errors.into_iter().map(|mut e| {
                if e.column.as_deref() == Some("") {
                    e.column = None;
                }
                e
            }));
            continue;
        }
        seen.insert(id.clone(), line);
        // Members are compared by the duplicate rules below; cooperatives by name.
        if kind == Kind::Cooperatives {
            if let Some(first) = names.get(&name_key) {
                report.possible_duplicates.push(PossibleDuplicate {
                    line,
                    like: format!("line:{first}"),
                    reason: "same name in the same province as another row".into(),
                });
            } else {
                names.insert(name_key, line);
            }
        }
        report.valid += 1;
        planned.push(Planned { line, id, record });
    }
    // Records that exist already (an earlier import of the same rows).
    let mut existing: HashSet<String> = HashSet::new();
    for chunk in planned.chunks(500) {
        let ids: Vec<String> = chunk.iter().map(|p| p.id.clone()).collect();
        existing.extend(
            documents::table
                .select(documents::id)
                .filter(documents::id.eq_any(ids))
                .load::<String>(conn)?,
        );
    }
    if kind == Kind::Members {
        let coops: Vec<String> = planned
            .iter()
            .filter_map(|p| match &p.record {
                Record::Member(m) => m.cooperative_id.clone(),
                Record::Cooperative(_) => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        // The duplicate rules (`domain::matching`) within each cooperative: against its
        // members in the database and against the file's earlier rows.
        type Known = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let mut by_coop: HashMap<String, Vec<(String, matching::Prepared)>> = HashMap::new();
        for chunk in coops.chunks(500) {
            let known: Vec<Known> = members::table
                .select((
                    members::id,
                    members::cooperative_id,
                    members::full_name_khmer,
                    members::name_latin,
                    members::sex,
                    members::year_of_birth,
                    members::phone,
                    members::village,
                ))
                .filter(members::cooperative_id.eq_any(chunk.to_vec()))
                .load(conn)?;
            for (id, coop, km, lat, sex, yob, phone, village) in known {
                let person = Person {
                    name_khmer: km,
                    name_latin: lat,
                    sex,
                    year_of_birth: yob,
                    phone,
                    village,
                    cooperative_id: coop.clone(),
                };
                by_coop
                    .entry(coop.unwrap_or_default())
                    .or_default()
                    .push((id, matching::Prepared::of(&person)));
            }
        }
        let mut earlier: HashMap<String, Vec<(u64, matching::Prepared)>> = HashMap::new();
        for p in &planned {
            let Record::Member(m) = &p.record else {
                continue;
            };
            if existing.contains(&p.id) {
                continue;
            }
            let person = matching::Prepared::of(&Person {
                name_khmer: m.full_name_khmer.clone(),
                name_latin: m.name_latin.clone(),
                sex: m.sex.clone(),
                year_of_birth: m.year_of_birth,
                phone: m.phone.clone(),
                village: m.village.clone(),
                cooperative_id: m.cooperative_id.clone(),
            });
            let coop = m.cooperative_id.clone().unwrap_or_default();
            for (id, other) in by_coop.get(&coop).into_iter().flatten() {
                let s = matching::score_prepared(&person, other);
                if *id != p.id && s.points >= matching::PROPOSE_AT {
                    report.possible_duplicates.push(PossibleDuplicate {
                        line: p.line,
                        like: id.clone(),
                        reason: s.explain(),
                    });
                }
            }
            let rows = earlier.entry(coop).or_default();
            for (line, other) in rows.iter() {
                let s = matching::score_prepared(&person, other);
                if s.points >= matching::PROPOSE_AT {
                    report.possible_duplicates.push(PossibleDuplicate {
                        line: p.line,
                        like: format!("line:{line}"),
                        reason: s.explain(),
                    });
                }
            }
            rows.push((p.line, person));
        }
    }
    report.existing = planned.iter().filter(|p| existing.contains(&p.id)).count() as u64;
    report.to_create = report.valid - report.existing;
    planned.retain(|p| !existing.contains(&p.id));
    report.errors.sort_by_key(|e| e.line);
    Ok(Plan {
        kind,
        report,
        rows: planned,
    })
}

/// Where `apply` gets a connection for each batch: the pool (the server) or one
/// connection (the command line).
pub trait Connections {
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError>;
}

impl Connections for &Database {
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut conn = self.get()?;
        f(&mut conn)
    }
}

impl Connections for &mut DbConnection {
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        f(self)
    }
}

/// Creates the planned records as server changes of `actor` for `admin_user_id`, `BATCH`
/// per transaction, calling `progress(done, total)` after each. A record that appeared
/// meanwhile (another import) counts as existing; a row that fails never stops the rest.
pub fn apply(
    mut conns: impl Connections,
    plan: &mut Plan,
    actor: &ActorId,
    admin_user_id: &str,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), ApiError> {
    let total = plan.rows.len() as u64;
    let mut done = 0u64;
    let rows = std::mem::take(&mut plan.rows);
    for batch in rows.chunks(BATCH) {
        // Detection one member at a time is paused for the import: one rescan after the
        // last batch finds the same pairs (60,000 members: 1.3 s instead of ~2 ms each).
        let outcome: Vec<(u64, Result<(), CommitError>)> = conns.with(|conn| {
            crate::records::duplicates::paused(|| {
                write_transaction(conn, |conn| {
                    let mut out = Vec::new();
                    for p in batch {
                        let result = match &p.record {
                            Record::Cooperative(c) => records::create(
                                conn,
                                actor,
                                admin_user_id,
                                &p.id,
                                DocType::Cooperative,
                                |tx| c.write(tx, true),
                            ),
                            Record::Member(m) => records::create(
                                conn,
                                actor,
                                admin_user_id,
                                &p.id,
                                DocType::Member,
                                |tx| m.write(tx, true),
                            ),
                        };
                        match result {
                            Ok(_) => out.push((p.line, Ok(()))),
                            // A database error ends the transaction (the whole batch is rolled
                            // back), so it is the job's error, not one row's.
                            Err(CommitError::Database(e)) => return Err(ApiError::from(e)),
                            Err(e @ CommitError::Internal(_)) => return Err(e.into()),
                            Err(e) => out.push((p.line, Err(e))),
                        }
                    }
                    Ok::<_, ApiError>(out)
                })
            })
        })?;
        for (line, result) in outcome {
            match result {
                Ok(()) => plan.report.created += 1,
                Err(CommitError::Exists) => plan.report.existing += 1,
                Err(e) => {
                    plan.report.failed += 1;
                    plan.report.errors.push(RowError {
                        line,
                        column: None,
                        code: "not_created".into(),
                        message: e.to_string(),
                    });
                }
            }
        }
        done += batch.len() as u64;
        progress(done, total);
    }
    plan.report.to_create = plan.report.to_create.saturating_sub(plan.report.created);
    if plan.report.created > 0 && crate::records::duplicates::active() {
        conns.with(|conn| {
            write_transaction(conn, |conn| {
                crate::records::duplicates::rescan(conn, |_, _| {})
                    .map(|_| ())
                    .map_err(ApiError::from)
            })
        })?;
    }
    Ok(())
}

/// The template of a kind: the header (`Khmer label (key)`) and one example row.
pub fn template(
    kind: Kind,
    format: Format,
    out: impl std::io::Write + Send + 'static,
) -> Result<(), ApiError> {
    let columns: Vec<Column> = kind
        .fields()
        .iter()
        .map(|f| Column {
            name: format!("{} ({})", f.khmer, f.key).into(),
            kind: CellKind::Text,
        })
        .collect();
    let mut sink = tabular::sink(format, out, kind.as_str(), &columns)?;
    let example: Vec<Value> = kind
        .fields()
        .iter()
        .map(|f| Value::from(f.example))
        .collect();
    sink.row(&example)?;
    sink.finish()?;
    Ok(())
}

/// The rows of a report's errors grouped by line, for printing.
pub fn errors_by_line(report: &Report) -> BTreeMap<u64, Vec<&RowError>> {
    let mut out: BTreeMap<u64, Vec<&RowError>> = BTreeMap::new();
    for e in &report.errors {
        out.entry(e.line).or_default().push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_natural_key() {
        let a = Cooperative {
            registration_number: Some("kpt-2019-014 ".into()),
            ..Cooperative::default()
        };
        let b = Cooperative {
            registration_number: Some("KPT-2019-014".into()),
            name_khmer: Some("other".into()),
            ..Cooperative::default()
        };
        assert_eq!(cooperative_id(&a), cooperative_id(&b));
        let m = |name: &str, phone: &str| Member {
            cooperative_id: Some("c".into()),
            full_name_khmer: Some(name.into()),
            year_of_birth: Some(1986),
            phone: Some(phone.into()),
            ..Member::default()
        };
        assert_eq!(
            member_id(&m("សុខ  ចាន់ថា", "012 345 678")),
            member_id(&m("សុខ\u{200b} ចាន់ថា", "+85512345678"))
        );
        assert_ne!(
            member_id(&m("សុខ ចាន់ថា", "012")),
            member_id(&m("សុខ ចាន់ថា", "013"))
        );
    }

    #[test]
    fn headers_are_read_by_key_label_or_both() {
        let header: Vec<String> = [
            "លេខចុះបញ្ជី (registration_number)",
            "NAME_KHMER",
            "ឈ្មោះសហគមន៍ (ឡាតាំង)",
            "notes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (mapped, ignored) = map_header(Kind::Cooperatives, &header);
        let keys: Vec<Option<&str>> = mapped.iter().map(|f| f.map(|f| f.key)).collect();
        assert_eq!(
            keys,
            [
                Some("registration_number"),
                Some("name_khmer"),
                Some("name_latin"),
                None
            ]
        );
        assert_eq!(ignored, ["notes"]);
    }

    #[test]
    fn excel_days_are_dates() {
        assert_eq!(excel_day(45716.0).as_deref(), Some("2025-02-28"));
    }
}
