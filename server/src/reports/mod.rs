//! Programme figures: people trained, sessions and hours, cooperatives reached, age bands,
//! computed in SQL from the projection (never by loading documents), within the caller's
//! scope and the filters asked, as a table of typed cells that answers JSON, CSV or XLSX.
//!
//! The definitions, stated once here and in docs/admin-guide.md:
//! - A **person** is a member (`member_id`) or, for someone in no cooperative, the
//!   attendance entry's participant id. A member merged into another (`merged_into`,
//!   docs/duplicates.md) is the survivor: attendance recorded under either id, before or
//!   after the merge, is one person. A person is **trained** by an attendance entry
//!   marked `present` or `partial` in a session that is not `cancelled`.
//! - A person's **sex** is the member record's, else the attendance entry's; one person
//!   counts under one sex per row (a known value before an unknown one; of two known
//!   values that disagree, the later of female, male, other), so the sex columns add up
//!   to `people`.
//! - **Hours delivered** sum the attended hours: a `partial` entry's `hours`, a `present`
//!   entry's `hours` or else the session's `planned_hours`.
//! - **Average attendance** is attended entries in `held` sessions per `held` session.
//! - A cooperative is **reached** when it has at least one `held` session in the range.
//! - **Age** is the year of the end of the range (or this year) minus the member's year
//!   of birth, or the age recorded on the attendance entry of someone in no cooperative.

use std::collections::{BTreeMap, HashMap};

use diesel::{
    QueryableByName,
    connection::SimpleConnection,
    prelude::*,
    sql_types::{BigInt, Double, Nullable, Text},
};
use serde_json::{Map, Value as Json, json};

use crate::{
    auth::Principal,
    db::{
        DbConnection,
        schema::{cooperatives, provinces},
        sql::Sql,
    },
    domain::scope::Scope,
    error::ApiError,
    export::Filter,
    tabular::{Column, Kind, Value, col},
};

/// The reports there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    PeopleTrained,
    PeopleTrainedByMonth,
    PeopleTrainedByCooperative,
    Sessions,
    SessionsByMonth,
    CooperativesReached,
    AgeBands,
}

impl Report {
    pub const ALL: [Report; 7] = [
        Report::PeopleTrained,
        Report::PeopleTrainedByMonth,
        Report::PeopleTrainedByCooperative,
        Report::Sessions,
        Report::SessionsByMonth,
        Report::CooperativesReached,
        Report::AgeBands,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Report::PeopleTrained => "people_trained",
            Report::PeopleTrainedByMonth => "people_trained_by_month",
            Report::PeopleTrainedByCooperative => "people_trained_by_cooperative",
            Report::Sessions => "sessions",
            Report::SessionsByMonth => "sessions_by_month",
            Report::CooperativesReached => "cooperatives_reached",
            Report::AgeBands => "age_bands",
        }
    }

    pub fn parse(s: &str) -> Option<Report> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn description(self) -> &'static str {
        match self {
            Report::PeopleTrained => {
                "distinct people trained by province and programme, by sex, with totals"
            }
            Report::PeopleTrainedByMonth => "distinct people trained by month and programme",
            Report::PeopleTrainedByCooperative => {
                "distinct people trained by cooperative, for one province (province=)"
            }
            Report::Sessions => {
                "sessions planned, held and cancelled, hours delivered and average attendance, by province"
            }
            Report::SessionsByMonth => "the sessions report by month of the scheduled date",
            Report::CooperativesReached => {
                "cooperatives with at least one held session out of those registered, by province"
            }
            Report::AgeBands => "distinct people trained by age band and sex",
        }
    }
}

/// A computed report: typed columns and rows (totals are rows whose dimensions say `all`).
#[derive(Debug, Clone)]
pub struct Figures {
    pub report: Report,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

impl Figures {
    /// `{report, filters, columns, rows: [{column: value}]}`.
    pub fn to_json(&self, filter: &Filter) -> Json {
        let rows: Vec<Json> = self
            .rows
            .iter()
            .map(|r| {
                let o: Map<String, Json> = self
                    .columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.name.to_string(), v.to_json()))
                    .collect();
                Json::Object(o)
            })
            .collect();
        json!({
            "report": self.report.as_str(),
            "filters": filter.to_json(),
            "columns": self.columns.iter().map(|c| c.name.as_ref()).collect::<Vec<_>>(),
            "rows": rows,
        })
    }
}

/// The word for every row of a total.
pub const ALL: &str = "all";

const PERSON: &str = "COALESCE(m.merged_into, a.member_id, a.participant_id)";
const SEX: &str = "COALESCE(m.sex, a.sex)";

/// Computes `report` for `principal` (admins only) within `filter`.
pub fn run(
    conn: &mut DbConnection,
    principal: &Principal,
    report: Report,
    filter: &Filter,
) -> Result<Figures, ApiError> {
    principal.require_admin()?;
    let scope = principal.actor().scope();
    let names = province_names(conn)?;
    // A national report reads ~30 MB of SQLite pages (attendance, its index, members) in
    // index order; through the 2 MB page cache that is a `pread` and a copy per page
    // visit, a third of the report's time. Memory-mapped reads for the report only (the
    // mapping is dropped after it, so idle connections map nothing).
    let sqlite = matches!(conn, DbConnection::Sqlite(_));
    if sqlite {
        conn.batch_execute("PRAGMA mmap_size = 1073741824")?;
    }
    let figures = compute(conn, &scope, report, filter, &names);
    if sqlite {
        conn.batch_execute("PRAGMA mmap_size = 0")?;
    }
    let (columns, rows) = figures?;
    Ok(Figures {
        report,
        columns,
        rows,
    })
}

fn compute(
    conn: &mut DbConnection,
    scope: &Scope,
    report: Report,
    filter: &Filter,
    names: &Names,
) -> Result<Table, ApiError> {
    let (columns, rows) = match report {
        Report::PeopleTrained => people_trained(conn, scope, filter, names)?,
        Report::PeopleTrainedByMonth => people_by_month(conn, scope, filter)?,
        Report::PeopleTrainedByCooperative => people_by_cooperative(conn, scope, filter)?,
        Report::Sessions => sessions(conn, scope, filter, Dim::Province, names)?,
        Report::SessionsByMonth => sessions(conn, scope, filter, Dim::Month, names)?,
        Report::CooperativesReached => cooperatives_reached(conn, scope, filter, names)?,
        Report::AgeBands => age_bands(conn, scope, filter)?,
    };
    Ok((columns, rows))
}

/// A grouping of sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Province,
    Programme,
    Month,
    Cooperative,
}

impl Dim {
    fn sql(self) -> &'static str {
        match self {
            Dim::Province => "s.province_code",
            Dim::Programme => "s.programme",
            Dim::Month => "substr(s.scheduled_date, 1, 7)",
            Dim::Cooperative => "s.cooperative_id",
        }
    }
}

/// The conditions on sessions `s` (with their document row `sd` joined unless the scope
/// is everything): in scope, in the province and programme asked, in the date range.
fn session_conditions(sql: &mut Sql, scope: &Scope, f: &Filter) {
    sql.in_scope("sd", scope);
    if let Some(p) = &f.province {
        sql.push(" AND s.province_code = ").bind(p.clone());
    }
    if let Some(p) = &f.programme {
        sql.push(" AND s.programme = ").bind(p.clone());
    }
    if let Some(d) = f.first_day() {
        sql.push(" AND s.scheduled_date >= ").bind(d);
    }
    if let Some(d) = f.last_day() {
        sql.push(" AND s.scheduled_date <= ").bind(d);
    }
}

/// The session's document row `sd`, for the scope condition; not joined for national
/// admins, who see everything (a lookup per row that costs ~20% of a national report).
fn join_scope(sql: &mut Sql, scope: &Scope) {
    if !scope.all {
        sql.push("JOIN documents sd ON sd.id = s.id ");
    }
}

/// `FROM … WHERE …` of the attendance entries that train someone.
fn attended(sql: &mut Sql, scope: &Scope, f: &Filter) {
    sql.push(" FROM attendance a JOIN training_sessions s ON s.id = a.session_id ");
    join_scope(sql, scope);
    sql.push(
        "LEFT JOIN members m ON m.id = a.member_id \
         WHERE a.status IN ('present', 'partial') \
         AND (s.status IS NULL OR s.status <> 'cancelled') AND ",
    );
    session_conditions(sql, scope, f);
}

#[derive(QueryableByName, Debug)]
struct AttendedRow {
    #[diesel(sql_type = Nullable<Text>)]
    d0: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    d1: Option<String>,
    #[diesel(sql_type = Text)]
    person: String,
    #[diesel(sql_type = Nullable<Text>)]
    sex: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    age: Option<i64>,
}

/// A person's sex for counting: a known value beats an unknown one; two known values
/// that disagree count as the later of female, male, other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sex {
    Unknown,
    Female,
    Male,
    Other,
}

impl Sex {
    fn of(s: Option<&str>) -> Sex {
        match s {
            Some("female") => Sex::Female,
            Some("male") => Sex::Male,
            Some("other") => Sex::Other,
            _ => Sex::Unknown,
        }
    }
}

/// The entries that train someone, loaded once per report with one scan; the grouping
/// by person is done here (sorting 90,000 text keys in SQL cost SQLite ~0.5 s a
/// grouping level). Dimension values and persons are interned.
struct Attended {
    names: Vec<String>,
    /// (d0, d1, person, sex, age)
    rows: Vec<(u32, u32, u32, Sex, Option<i64>)>,
}

/// The interned value that stands for "every value" of a dimension.
const TOTAL: u32 = u32::MAX;

impl Attended {
    fn load(
        conn: &mut DbConnection,
        scope: &Scope,
        f: &Filter,
        d0: Option<Dim>,
        d1: Option<Dim>,
    ) -> Result<Attended, ApiError> {
        let expr = |d: Option<Dim>| d.map_or("CAST(NULL AS TEXT)", Dim::sql);
        // The year is a number this function made, not caller text.
        let year =
            f.to.map(|d| chrono::Datelike::year(&d))
                .unwrap_or_else(|| chrono::Datelike::year(&chrono::Utc::now()));
        let mut sql = Sql::new(conn);
        sql.push("SELECT ")
            .push(expr(d0))
            .push(" AS d0, ")
            .push(expr(d1))
            .push(" AS d1, ")
            .push(PERSON)
            .push(" AS person, ")
            .push(SEX)
            .push(" AS sex, CASE WHEN m.year_of_birth IS NOT NULL THEN ")
            .push(&year.to_string())
            .push(" - m.year_of_birth ELSE a.age END AS age");
        attended(&mut sql, scope, f);
        let loaded: Vec<AttendedRow> = sql.load(conn)?;
        let mut names: Vec<String> = Vec::new();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut persons: HashMap<String, u32> = HashMap::new();
        let mut intern = |v: Option<String>| -> u32 {
            let v = v.unwrap_or_default();
            if let Some(i) = index.get(&v) {
                return *i;
            }
            let i = names.len() as u32;
            names.push(v.clone());
            index.insert(v, i);
            i
        };
        let mut rows = Vec::with_capacity(loaded.len());
        for r in loaded {
            let n = persons.len() as u32;
            let person = *persons.entry(r.person).or_insert(n);
            rows.push((
                intern(r.d0),
                intern(r.d1),
                person,
                Sex::of(r.sex.as_deref()),
                r.age,
            ));
        }
        Ok(Attended { names, rows })
    }

    /// People per sex by (d0, d1); `by0`/`by1` false: that dimension is totalled (`all`).
    fn count(&self, by0: bool, by1: bool) -> Grouped {
        // One flat map of (group, person) → sex, then folded per group.
        let mut seen: HashMap<(u32, u32, u32), Sex> = HashMap::with_capacity(self.rows.len());
        for &(d0, d1, person, sex, _) in &self.rows {
            let key = (
                if by0 { d0 } else { TOTAL },
                if by1 { d1 } else { TOTAL },
                person,
            );
            let e = seen.entry(key).or_insert(sex);
            *e = (*e).max(sex);
        }
        let mut groups: HashMap<(u32, u32), BySex> = HashMap::new();
        for ((d0, d1, _), sex) in seen {
            groups.entry((d0, d1)).or_default().add(sex, 1);
        }
        let name = |i: u32| -> String {
            if i == TOTAL {
                ALL.to_string()
            } else {
                self.names.get(i as usize).cloned().unwrap_or_default()
            }
        };
        groups
            .into_iter()
            .map(|((d0, d1), c)| ((name(d0), name(d1)), c))
            .collect()
    }

    /// People per sex by age band (each person's greatest age and sex), and the total.
    fn by_age(&self) -> (BTreeMap<usize, BySex>, BySex) {
        let mut people: HashMap<u32, (Sex, Option<i64>)> = HashMap::new();
        for &(_, _, person, sex, age) in &self.rows {
            let e = people.entry(person).or_insert((sex, age));
            e.0 = e.0.max(sex);
            e.1 = e.1.max(age);
        }
        let mut by: BTreeMap<usize, BySex> = BTreeMap::new();
        let mut total = BySex::default();
        for (sex, age) in people.into_values() {
            let b = band(age);
            let i = AGE_BANDS
                .iter()
                .position(|(n, _)| *n == b)
                .unwrap_or(AGE_BANDS.len());
            by.entry(i).or_default().add(sex, 1);
            total.add(sex, 1);
        }
        (by, total)
    }
}

/// People trained per sex, grouped by up to two dimensions (`None`: not grouped).
#[derive(Debug, Default, Clone, Copy)]
struct BySex {
    women: i64,
    men: i64,
    other: i64,
    unknown: i64,
}

impl BySex {
    fn add(&mut self, sex: Sex, n: i64) {
        match sex {
            Sex::Female => self.women += n,
            Sex::Male => self.men += n,
            Sex::Other => self.other += n,
            Sex::Unknown => self.unknown += n,
        }
    }

    fn people(&self) -> i64 {
        self.women + self.men + self.other + self.unknown
    }

    fn cells(&self) -> Vec<Value> {
        let people = self.people();
        let share = (people > 0).then(|| round(self.women as f64 / people as f64, 4));
        vec![
            self.women.into(),
            self.men.into(),
            self.other.into(),
            self.unknown.into(),
            people.into(),
            share.into(),
        ]
    }

    const COLUMNS: [Column; 6] = [
        col("women", Kind::Integer),
        col("men", Kind::Integer),
        col("other_sex", Kind::Integer),
        col("unknown_sex", Kind::Integer),
        col("people", Kind::Integer),
        col("women_share", Kind::Number),
    ];
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

type Grouped = BTreeMap<(String, String), BySex>;

type Names = HashMap<String, (String, String)>;

fn province_names(conn: &mut DbConnection) -> Result<Names, ApiError> {
    let rows: Vec<(String, String, String)> = provinces::table
        .select((
            provinces::code,
            provinces::name_latin,
            provinces::name_khmer,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(|(c, l, k)| (c, (l, k))).collect())
}

fn province_cells(code: &str, names: &Names) -> Vec<Value> {
    let (latin, khmer) = names
        .get(code)
        .map(|(l, k)| (Value::from(l.as_str()), Value::from(k.as_str())))
        .unwrap_or((Value::Empty, Value::Empty));
    vec![code.into(), latin, khmer]
}

const PROVINCE_COLUMNS: [Column; 3] = [
    col("province_code", Kind::Text),
    col("province_name", Kind::Text),
    col("province_name_khmer", Kind::Text),
];

type Table = (Vec<Column>, Vec<Vec<Value>>);

fn people_trained(
    conn: &mut DbConnection,
    scope: &Scope,
    f: &Filter,
    names: &Names,
) -> Result<Table, ApiError> {
    let mut columns = PROVINCE_COLUMNS.to_vec();
    columns.push(col("programme", Kind::Text));
    columns.extend(BySex::COLUMNS);
    let mut rows = Vec::new();
    let attended = Attended::load(conn, scope, f, Some(Dim::Province), Some(Dim::Programme))?;
    // Cells, then each province's total, each programme's national total, the total.
    for (by0, by1) in [(true, true), (true, false), (false, true), (false, false)] {
        for ((province, programme), counts) in attended.count(by0, by1) {
            let mut row = province_cells(&province, names);
            row.push(programme.into());
            row.extend(counts.cells());
            rows.push(row);
        }
    }
    Ok((columns, rows))
}

fn people_by_month(conn: &mut DbConnection, scope: &Scope, f: &Filter) -> Result<Table, ApiError> {
    let mut columns = vec![col("month", Kind::Text), col("programme", Kind::Text)];
    columns.extend(BySex::COLUMNS);
    let mut rows = Vec::new();
    let attended = Attended::load(conn, scope, f, Some(Dim::Month), Some(Dim::Programme))?;
    let mut grouped = attended.count(true, true);
    grouped.extend(attended.count(true, false));
    for ((month, programme), counts) in grouped {
        let mut row: Vec<Value> = vec![month.into(), programme.into()];
        row.extend(counts.cells());
        rows.push(row);
    }
    for ((_, _), counts) in attended.count(false, false) {
        let mut row: Vec<Value> = vec![ALL.into(), ALL.into()];
        row.extend(counts.cells());
        rows.push(row);
    }
    Ok((columns, rows))
}

fn people_by_cooperative(
    conn: &mut DbConnection,
    scope: &Scope,
    f: &Filter,
) -> Result<Table, ApiError> {
    if f.province.is_none() {
        return Err(ApiError::bad_request(
            "province_required",
            "the report by cooperative is for one province: add province=<code>",
        ));
    }
    let attended = Attended::load(conn, scope, f, Some(Dim::Cooperative), None)?;
    let grouped = attended.count(true, false);
    let ids: Vec<String> = grouped.keys().map(|(c, _)| c.clone()).collect();
    let coop_names: HashMap<String, (Option<String>, Option<String>)> = cooperatives::table
        .select((
            cooperatives::id,
            cooperatives::name_khmer,
            cooperatives::name_latin,
        ))
        .filter(cooperatives::id.eq_any(ids))
        .load::<(String, Option<String>, Option<String>)>(conn)?
        .into_iter()
        .map(|(id, k, l)| (id, (k, l)))
        .collect();
    let mut columns = vec![
        col("cooperative_id", Kind::Text),
        col("cooperative_name_khmer", Kind::Text),
        col("cooperative_name", Kind::Text),
    ];
    columns.extend(BySex::COLUMNS);
    let mut rows = Vec::new();
    for ((coop, _), counts) in grouped {
        // Sessions of groups still forming have no cooperative: one row for them all.
        let (k, l) = coop_names.get(&coop).cloned().unwrap_or_default();
        let mut row: Vec<Value> = vec![coop.into(), k.into(), l.into()];
        row.extend(counts.cells());
        rows.push(row);
    }
    for ((_, _), counts) in attended.count(false, false) {
        let mut row: Vec<Value> = vec![ALL.into(), Value::Empty, Value::Empty];
        row.extend(counts.cells());
        rows.push(row);
    }
    Ok((columns, rows))
}

#[derive(QueryableByName, Debug)]
struct SessionRow {
    #[diesel(sql_type = Nullable<Text>)]
    d0: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    planned: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    held: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    cancelled: Option<i64>,
    #[diesel(sql_type = BigInt)]
    total: i64,
}

#[derive(QueryableByName, Debug)]
struct HoursRow {
    #[diesel(sql_type = Nullable<Text>)]
    d0: Option<String>,
    #[diesel(sql_type = Nullable<Double>)]
    hours: Option<f64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    held_entries: Option<i64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct SessionCounts {
    planned: i64,
    held: i64,
    cancelled: i64,
    total: i64,
    hours: f64,
    held_entries: i64,
}

fn sessions(
    conn: &mut DbConnection,
    scope: &Scope,
    f: &Filter,
    dim: Dim,
    names: &Names,
) -> Result<Table, ApiError> {
    let mut by: BTreeMap<String, SessionCounts> = BTreeMap::new();
    for d in [Some(dim), None] {
        let expr = d.map_or("CAST(NULL AS TEXT)", Dim::sql);
        let mut sql = Sql::new(conn);
        sql.push("SELECT ").push(expr).push(
            " AS d0, \
             SUM(CASE WHEN s.status = 'scheduled' THEN 1 ELSE 0 END) AS planned, \
             SUM(CASE WHEN s.status = 'held' THEN 1 ELSE 0 END) AS held, \
             SUM(CASE WHEN s.status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled, \
             COUNT(*) AS total FROM training_sessions s ",
        );
        join_scope(&mut sql, scope);
        sql.push("WHERE ");
        session_conditions(&mut sql, scope, f);
        if let Some(d) = d {
            sql.push(" GROUP BY ").push(d.sql());
        }
        let key = |k: Option<String>| match d {
            Some(_) => k.unwrap_or_default(),
            None => ALL.to_string(),
        };
        for r in sql.load::<SessionRow>(conn)? {
            if r.total == 0 {
                continue;
            }
            let e = by.entry(key(r.d0)).or_default();
            e.planned = r.planned.unwrap_or(0);
            e.held = r.held.unwrap_or(0);
            e.cancelled = r.cancelled.unwrap_or(0);
            e.total = r.total;
        }
        let mut sql = Sql::new(conn);
        sql.push("SELECT ").push(expr).push(
            " AS d0, \
             SUM(CASE WHEN a.status = 'partial' THEN COALESCE(a.hours, 0) \
                 ELSE COALESCE(a.hours, s.planned_hours, 0) END) AS hours, \
             SUM(CASE WHEN s.status = 'held' THEN 1 ELSE 0 END) AS held_entries",
        );
        attended(&mut sql, scope, f);
        if let Some(d) = d {
            sql.push(" GROUP BY ").push(d.sql());
        }
        for r in sql.load::<HoursRow>(conn)? {
            if r.hours.is_none() && r.held_entries.is_none() {
                continue;
            }
            let e = by.entry(key(r.d0)).or_default();
            e.hours = round(r.hours.unwrap_or(0.0), 2);
            e.held_entries = r.held_entries.unwrap_or(0);
        }
    }
    let mut columns = match dim {
        Dim::Month => vec![col("month", Kind::Text)],
        _ => PROVINCE_COLUMNS.to_vec(),
    };
    columns.extend([
        col("sessions", Kind::Integer),
        col("planned", Kind::Integer),
        col("held", Kind::Integer),
        col("cancelled", Kind::Integer),
        col("hours_delivered", Kind::Number),
        col("attended_entries_held", Kind::Integer),
        col("average_attendance", Kind::Number),
    ]);
    // The total last, whatever it sorts as.
    let total = by.remove(ALL);
    let rows = by
        .into_iter()
        .chain(total.map(|t| (ALL.to_string(), t)))
        .map(|(k, c)| {
            let mut row = match dim {
                Dim::Month => vec![Value::from(k)],
                _ => province_cells(&k, names),
            };
            let avg = (c.held > 0).then(|| round(c.held_entries as f64 / c.held as f64, 2));
            row.extend([
                c.total.into(),
                c.planned.into(),
                c.held.into(),
                c.cancelled.into(),
                c.hours.into(),
                c.held_entries.into(),
                avg.into(),
            ]);
            row
        })
        .collect();
    Ok((columns, rows))
}

#[derive(QueryableByName, Debug)]
struct ReachRow {
    #[diesel(sql_type = Nullable<Text>)]
    d0: Option<String>,
    #[diesel(sql_type = BigInt)]
    registered: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    reached: Option<i64>,
}

fn cooperatives_reached(
    conn: &mut DbConnection,
    scope: &Scope,
    f: &Filter,
    names: &Names,
) -> Result<Table, ApiError> {
    let mut rows = Vec::new();
    for grouped in [true, false] {
        let mut sql = Sql::new(conn);
        sql.push("SELECT ")
            .push(if grouped {
                "c.province_code"
            } else {
                "CAST(NULL AS TEXT)"
            })
            .push(
                " AS d0, COUNT(*) AS registered, SUM(CASE WHEN EXISTS (SELECT 1 FROM \
                 training_sessions s WHERE s.cooperative_id = c.id AND s.status = 'held'",
            );
        if let Some(p) = &f.programme {
            sql.push(" AND s.programme = ").bind(p.clone());
        }
        if let Some(d) = f.first_day() {
            sql.push(" AND s.scheduled_date >= ").bind(d);
        }
        if let Some(d) = f.last_day() {
            sql.push(" AND s.scheduled_date <= ").bind(d);
        }
        sql.push(
            ") THEN 1 ELSE 0 END) AS reached FROM cooperatives c \
             JOIN documents cd ON cd.id = c.id WHERE ",
        )
        .in_scope("cd", scope);
        if let Some(p) = &f.province {
            sql.push(" AND c.province_code = ").bind(p.clone());
        }
        if grouped {
            sql.push(" GROUP BY c.province_code");
        }
        let mut part: Vec<(String, i64, i64)> = sql
            .load::<ReachRow>(conn)?
            .into_iter()
            .filter(|r| r.registered > 0)
            .map(|r| {
                let key = if grouped {
                    r.d0.unwrap_or_default()
                } else {
                    ALL.to_string()
                };
                (key, r.registered, r.reached.unwrap_or(0))
            })
            .collect();
        part.sort();
        for (k, registered, reached) in part {
            let mut row = province_cells(&k, names);
            row.extend([
                registered.into(),
                reached.into(),
                round(reached as f64 / registered as f64, 4).into(),
            ]);
            rows.push(row);
        }
    }
    let mut columns = PROVINCE_COLUMNS.to_vec();
    columns.extend([
        col("cooperatives_registered", Kind::Integer),
        col("cooperatives_reached", Kind::Integer),
        col("reached_share", Kind::Number),
    ]);
    Ok((columns, rows))
}

/// Age bands, youngest first; the last catches everything older.
pub const AGE_BANDS: [(&str, i64); 7] = [
    ("under_18", 18),
    ("18_24", 25),
    ("25_34", 35),
    ("35_44", 45),
    ("45_54", 55),
    ("55_64", 65),
    ("65_and_over", i64::MAX),
];

fn band(age: Option<i64>) -> &'static str {
    match age {
        Some(a) if a >= 0 => AGE_BANDS
            .iter()
            .find(|(_, below)| a < *below)
            .map_or("unknown", |(name, _)| name),
        _ => "unknown",
    }
}

fn age_bands(conn: &mut DbConnection, scope: &Scope, f: &Filter) -> Result<Table, ApiError> {
    let (by, total) = Attended::load(conn, scope, f, None, None)?.by_age();
    let mut columns = vec![col("age_band", Kind::Text)];
    columns.extend(BySex::COLUMNS);
    let mut rows: Vec<Vec<Value>> = by
        .into_iter()
        .map(|(i, c)| {
            let name = AGE_BANDS.get(i).map_or("unknown", |(n, _)| n);
            let mut row = vec![Value::from(name)];
            row.extend(c.cells());
            row
        })
        .collect();
    if total.people() > 0 {
        let mut row = vec![Value::from(ALL)];
        row.extend(total.cells());
        rows.push(row);
    }
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_fall_in_one_band() {
        assert_eq!(band(Some(17)), "under_18");
        assert_eq!(band(Some(18)), "18_24");
        assert_eq!(band(Some(64)), "55_64");
        assert_eq!(band(Some(90)), "65_and_over");
        assert_eq!(band(None), "unknown");
        assert_eq!(band(Some(-3)), "unknown");
    }

    #[test]
    fn the_sex_columns_add_up_to_people() {
        let mut c = BySex::default();
        c.add(Sex::Female, 17);
        c.add(Sex::Male, 12);
        c.add(Sex::of(None), 1);
        c.add(Sex::of(Some("F")), 1);
        assert_eq!((c.people(), c.unknown), (31, 2));
        assert_eq!(c.cells()[5], Value::Num(round(17.0 / 31.0, 4)));
    }

    #[test]
    fn every_report_name_round_trips() {
        for r in Report::ALL {
            assert_eq!(Report::parse(r.as_str()), Some(r));
        }
    }
}

/// Figures computed once per state of the data: an entry holds for as long as the change
/// log has not moved (every write that can alter a figure, a tablet's push, an admin's
/// decision or an import, appends to it), so a cached answer is never stale. The
/// dashboard reads through it; per process, at most `CACHE_ENTRIES` scopes × filters.
#[derive(Debug, Default)]
pub struct FiguresCache {
    entries: std::sync::Mutex<HashMap<String, (i64, std::sync::Arc<Json>)>>,
}

const CACHE_ENTRIES: usize = 512;

impl FiguresCache {
    /// `report` for `principal` within `filter`, as `Figures::to_json`.
    pub fn get(
        &self,
        conn: &mut DbConnection,
        principal: &Principal,
        report: Report,
        filter: &Filter,
    ) -> Result<std::sync::Arc<Json>, ApiError> {
        use crate::db::schema::changes;
        principal.require_admin()?;
        let position: Option<i64> = changes::table
            .select(diesel::dsl::max(changes::seq))
            .first(conn)?;
        let position = position.unwrap_or(0);
        let key = format!(
            "{:?}|{}|{}",
            principal.actor().scope(),
            report.as_str(),
            filter.to_json()
        );
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, figures)) = entries.get(&key)
                && *at == position
            {
                return Ok(figures.clone());
            }
        }
        let figures = std::sync::Arc::new(run(conn, principal, report, filter)?.to_json(filter));
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (position, figures.clone()));
        Ok(figures)
    }
}
