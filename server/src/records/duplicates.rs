//! Possible duplicate members found as records arrive: whenever the projection writes a
//! member whose compared fields (names, phone, sex, year of birth, village, cooperative)
//! are new or changed, the member is scored (`domain::matching`) against the members of
//! its province that share a block with it (those of its cooperative sharing a name key
//! or the phone, its phone, its Khmer skeleton: three index look-ups), and the pairs that reach the
//! proposal threshold are kept in `duplicate_pairs` for review. A pair an admin decided
//! ("not the same person", merged) is not proposed again unless one side's compared
//! fields change (its fingerprint). `rescan` does the same for every member at once.

use std::{
    cell::Cell,
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicBool, Ordering},
};

use diesel::prelude::*;

use super::CommitError;
use crate::{
    db::{
        DbConnection, now,
        schema::{cooperatives, documents, duplicate_pairs, members},
    },
    domain::{
        matching::{self, Person, Prepared, Score},
        status::PairStatus,
    },
};

/// Whether detection runs as members are projected (the `duplicate_detection` setting).
static ENABLED: AtomicBool = AtomicBool::new(true);

thread_local! {
    /// Off while this thread rebuilds the projection: a rebuild re-projects every
    /// member, and the pairs (with their decisions) are kept as they are.
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub(crate) fn active() -> bool {
    ENABLED.load(Ordering::Relaxed) && !PAUSED.with(Cell::get)
}

/// Runs `f` with detection paused on this thread.
pub(crate) fn paused<T>(f: impl FnOnce() -> T) -> T {
    let before = PAUSED.with(|p| p.replace(true));
    let out = f();
    PAUSED.with(|p| p.set(before));
    out
}

/// The compared fields of a member row: id, cooperative, Khmer name, Latin name, sex,
/// year of birth, phone, village.
pub(crate) type Compared = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

macro_rules! compared_columns {
    () => {
        (
            members::id,
            members::cooperative_id,
            members::full_name_khmer,
            members::name_latin,
            members::sex,
            members::year_of_birth,
            members::phone,
            members::village,
        )
    };
}
pub(crate) use compared_columns;

pub(crate) fn person(row: &Compared) -> Person {
    Person {
        cooperative_id: row.1.clone(),
        name_khmer: row.2.clone(),
        name_latin: row.3.clone(),
        sex: row.4.clone(),
        year_of_birth: row.5,
        phone: row.6.clone(),
        village: row.7.clone(),
    }
}

/// The pair's id: the same two members are always the same pair (a rescan finds the
/// row it found before).
pub fn pair_id(a: &str, b: &str) -> String {
    const PAIRS: uuid::Uuid = uuid::Uuid::from_u128(0x2f8d_41c6_9b0e_4a57_8c3d_6e1f_a4b2_9d70);
    uuid::Uuid::new_v5(&PAIRS, format!("{a}\n{b}").as_bytes()).to_string()
}

/// A stored pair's status and the fingerprints of its two sides when it was last scored
/// or decided.
type PairState = (String, String, String);

/// The stored pairs matching `filter`, as `(id, PairState)`.
macro_rules! pair_states {
    ($conn:expr, $filter:expr) => {
        duplicate_pairs::table
            .filter($filter)
            .select((
                duplicate_pairs::id,
                duplicate_pairs::status,
                duplicate_pairs::a_fingerprint,
                duplicate_pairs::b_fingerprint,
            ))
            .load::<(String, String, String, String)>($conn)?
            .into_iter()
            .map(|(i, s, a, b)| (i, (s, a, b)))
    };
}

/// One scored pair, `a` < `b`.
struct Found<'a> {
    a: &'a str,
    b: &'a str,
    a_print: String,
    b_print: String,
    score: Score,
}

/// The rules that matched, as stored (`[{field, rule, points}]`).
pub(crate) fn rules_value(score: &Score) -> serde_json::Value {
    score
        .matched
        .iter()
        .map(|m| serde_json::json!({"field": m.field, "rule": m.rule, "points": m.points}))
        .collect()
}

fn rules_json(score: &Score) -> String {
    rules_value(score).to_string()
}

/// Writes a scored pair: new → open; open → rescored; decided → left alone while both
/// sides are as they were decided, proposed again (open) when one side changed.
fn upsert(
    conn: &mut DbConnection,
    province: Option<&str>,
    f: &Found<'_>,
    existing: Option<&PairState>,
) -> Result<bool, CommitError> {
    let id = pair_id(f.a, f.b);
    let at = now();
    let points = i64::from(f.score.points);
    let rules = rules_json(&f.score);
    match existing {
        None => {
            diesel::insert_into(duplicate_pairs::table)
                .values((
                    duplicate_pairs::id.eq(&id),
                    duplicate_pairs::a_id.eq(f.a),
                    duplicate_pairs::b_id.eq(f.b),
                    duplicate_pairs::province_code.eq(province),
                    duplicate_pairs::score.eq(points),
                    duplicate_pairs::rules.eq(&rules),
                    duplicate_pairs::status.eq(PairStatus::Open.as_str()),
                    duplicate_pairs::a_fingerprint.eq(&f.a_print),
                    duplicate_pairs::b_fingerprint.eq(&f.b_print),
                    duplicate_pairs::found_at.eq(at),
                    duplicate_pairs::updated_at.eq(at),
                ))
                .execute(conn)?;
            Ok(true)
        }
        Some((status, a_print, b_print)) => {
            let unchanged = *a_print == f.a_print && *b_print == f.b_print;
            let status = PairStatus::parse(status).unwrap_or(PairStatus::Open);
            // A merged pair stays merged whatever its sides do: a merge is undone by its
            // own action, not by an edit. "Not the same" holds while both sides do.
            if status == PairStatus::Merged || (status == PairStatus::NotSame && unchanged) {
                return Ok(false);
            }
            diesel::update(duplicate_pairs::table.find(&id))
                .set((
                    duplicate_pairs::province_code.eq(province),
                    duplicate_pairs::score.eq(points),
                    duplicate_pairs::rules.eq(&rules),
                    duplicate_pairs::status.eq(PairStatus::Open.as_str()),
                    duplicate_pairs::a_fingerprint.eq(&f.a_print),
                    duplicate_pairs::b_fingerprint.eq(&f.b_print),
                    duplicate_pairs::updated_at.eq(at),
                    duplicate_pairs::decided_by.eq(None::<String>),
                    duplicate_pairs::decided_at.eq(None::<chrono::NaiveDateTime>),
                ))
                .execute(conn)?;
            Ok(status != PairStatus::Open)
        }
    }
}

/// Scores the member `id` (as projected) against the members of its province that share
/// a block with it and keeps the pairs that reach the threshold; open pairs of this
/// member that no longer reach it are withdrawn (they were never decided). Runs in the
/// caller's transaction, after the member's row and its `documents` row are written.
pub fn detect(conn: &mut DbConnection, id: &str) -> Result<usize, CommitError> {
    let row: Option<(Compared, Option<String>, Option<String>)> = members::table
        .inner_join(documents::table)
        .filter(members::id.eq(id))
        .select((
            compared_columns!(),
            members::merged_into,
            documents::province_code,
        ))
        .first(conn)
        .optional()?;
    match row {
        Some((row, merged_into, province)) => {
            let me = Prepared::of(&person(&row));
            detect_row(conn, &row, &me, province.as_deref(), merged_into.is_some())
        }
        None => Ok(0),
    }
}

/// The members (not merged) of `province` sharing a block with `me`: its cooperative,
/// its phone, its Khmer skeleton (index look-ups), without `exclude` (itself). Used for
/// a member (`detect_row`) and for a walk-in (`records::walk_ins`).
pub(crate) fn block_members(
    conn: &mut DbConnection,
    me: &Prepared,
    exclude: Option<&str>,
    province: &str,
) -> Result<HashMap<String, Compared>, CommitError> {
    let mut candidates: HashMap<String, Compared> = HashMap::new();
    let mut look = |rows: Vec<Compared>| {
        for r in rows {
            if Some(r.0.as_str()) != exclude {
                candidates.insert(r.0.clone(), r);
            }
        }
    };
    // Each block is one statement of a fixed shape (not boxed, no `IN` list): diesel
    // caches its prepared statement, and on SQLite preparing the statements afresh for
    // every new member was most of detection's cost. The province is the record's scope
    // by its rule (`projection::scope_of`: the cooperative's province, else the member's
    // own field), read from the small `cooperatives` table: joined to `documents`
    // instead, every candidate was a seek into rows that carry the record's snapshot,
    // which at national scale halved the seed's push throughput.
    macro_rules! block {
        ($key:expr) => {
            members::table
                .left_join(
                    cooperatives::table.on(members::cooperative_id.eq(cooperatives::id.nullable())),
                )
                .filter(members::merged_into.is_null())
                .filter(
                    cooperatives::province_code
                        .eq(province)
                        .or(cooperatives::province_code
                            .is_null()
                            .and(members::province_code.eq(province))),
                )
                .filter($key)
                .select(compared_columns!())
        };
    }
    // The cooperative block is the members of the cooperative that share a name key or
    // the phone: without either a pair scores at most 35 (cooperative, village, year of
    // birth; `matching::tests::without_a_name_or_phone_nobody_is_proposed`), below the
    // threshold, so the rest of a cooperative need not be read. A key the member lacks
    // is the empty string, which no stored key is (they are NULL or not empty).
    if let Some(c) = me.cooperative() {
        let shares = members::skeleton_key
            .eq(me.skeleton().unwrap_or_default())
            .or(members::phone_key.eq(me.phone().unwrap_or_default()))
            .or(members::latin_key.eq(me.latin().unwrap_or_default()));
        look(block!(members::cooperative_id.eq(c).and(shares)).load(conn)?);
    }
    // A phone or a skeleton shared by more than `matching::MAX_BLOCK` members says
    // nothing about a person (an enumerator's own number typed for everyone, a
    // placeholder): such a block is skipped, as `matching::pairs` skips it.
    let capped = |rows: Vec<Compared>| {
        if rows.len() > matching::MAX_BLOCK {
            Vec::new()
        } else {
            rows
        }
    };
    if let Some(p) = me.phone() {
        let rows = block!(members::phone_key.eq(p))
            .limit(matching::MAX_BLOCK as i64 + 1)
            .load(conn)?;
        look(capped(rows));
    }
    if let Some(k) = me.skeleton() {
        let rows = block!(members::skeleton_key.eq(k))
            .limit(matching::MAX_BLOCK as i64 + 1)
            .load(conn)?;
        look(capped(rows));
    }
    // No block of its own for the romanised key: members always have a Khmer name, and
    // two that match only in Latin letters share a cooperative or a phone to be proposed.
    Ok(candidates)
}

/// [`detect`] for a member row the caller has just written (the projection: no need to
/// read it back).
/// `me` is `row` prepared, `province` the record's scope province.
pub(crate) fn detect_row(
    conn: &mut DbConnection,
    row: &Compared,
    me: &Prepared,
    province: Option<&str>,
    merged: bool,
) -> Result<usize, CommitError> {
    let id = row.0.as_str();
    // A merged record is proposed with nobody: it is the survivor from now on.
    let candidates = match province {
        Some(province) if !merged => block_members(conn, me, Some(id), province)?,
        _ => HashMap::new(),
    };
    let my_print = matching::fingerprint(me);
    let mut found = Vec::new();
    let mut scored: Vec<(&String, Prepared, Score)> = candidates
        .values()
        .filter_map(|other| {
            let them = Prepared::of(&person(other));
            let score = matching::score_prepared(me, &them);
            (score.points >= matching::PROPOSE_AT).then_some((&other.0, them, score))
        })
        .collect();
    // The best `MAX_PROPOSED` (`matching::within_cap` is the same rule for a rescan).
    scored.sort_by(|a, b| b.2.points.cmp(&a.2.points).then_with(|| a.0.cmp(b.0)));
    scored.truncate(matching::MAX_PROPOSED);
    let prints: Vec<(String, String, Score)> = scored
        .into_iter()
        .map(|(other, them, score)| (other.clone(), matching::fingerprint(&them), score))
        .collect();
    for (other, their_print, score) in &prints {
        let (a, b, a_print, b_print) = if id < other.as_str() {
            (id, other.as_str(), my_print.clone(), their_print.clone())
        } else {
            (other.as_str(), id, their_print.clone(), my_print.clone())
        };
        found.push(Found {
            a,
            b,
            a_print,
            b_print,
            score: score.clone(),
        });
    }
    // Two look-ups, one per side's index (`a = ? OR b = ?` scans the table on SQLite).
    let mut existing: HashMap<String, PairState> = HashMap::new();
    existing.extend(pair_states!(conn, duplicate_pairs::a_id.eq(id)));
    existing.extend(pair_states!(conn, duplicate_pairs::b_id.eq(id)));
    let mut kept: HashSet<String> = HashSet::new();
    for f in &found {
        let pid = pair_id(f.a, f.b);
        upsert(conn, province, f, existing.get(&pid))?;
        kept.insert(pid);
    }
    let withdrawn: Vec<&String> = existing
        .iter()
        .filter(|(pid, (status, _, _))| status == PairStatus::Open.as_str() && !kept.contains(*pid))
        .map(|(pid, _)| pid)
        .collect();
    if !withdrawn.is_empty() {
        diesel::delete(duplicate_pairs::table.filter(duplicate_pairs::id.eq_any(withdrawn)))
            .execute(conn)?;
    }
    // The walk-ins this member may be learn of it (a walk-in registered later).
    if let Some(province) = province {
        super::walk_ins::member_changed(conn, id, me, province, merged)?;
    }
    Ok(found.len())
}

/// What a full rescan did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RescanReport {
    pub members: usize,
    pub provinces: usize,
    pub compared: u64,
    /// Pairs at or above the threshold.
    pub pairs: usize,
    /// Pairs new or proposed again.
    pub proposed: usize,
    /// Open pairs that no longer reach the threshold.
    pub withdrawn: usize,
    /// Members whose stored blocking keys were missing or stale and were written.
    pub keys_written: usize,
    /// The walk-ins (attendance of people with no member record), scored afresh.
    pub walk_ins: super::walk_ins::WalkInRescan,
}

/// Every member, province by province, as `detect` would find them one at a time (the
/// same blocks and scores), in one pass: after an upgrade (the blocking keys of members
/// projected before it are filled in), after an import with detection off, or to check.
pub fn rescan(
    conn: &mut DbConnection,
    mut progress: impl FnMut(usize, usize),
) -> Result<RescanReport, CommitError> {
    let mut report = RescanReport::default();
    // The compared fields, the stored keys (phone, skeleton, romanised name), the merge
    // mark.
    type Row = (
        Compared,
        (Option<String>, Option<String>, Option<String>),
        Option<String>,
    );
    let rows: Vec<Row> = members::table
        .select((
            compared_columns!(),
            (
                members::phone_key,
                members::skeleton_key,
                members::latin_key,
            ),
            members::merged_into,
        ))
        .load(conn)?;
    let provinces: HashMap<String, Option<String>> = documents::table
        .filter(documents::doc_type.eq("member"))
        .select((documents::id, documents::province_code))
        .load::<(String, Option<String>)>(conn)?
        .into_iter()
        .collect();
    report.members = rows.len();
    let mut by_province: HashMap<String, Vec<(Compared, Prepared)>> = HashMap::new();
    for (row, (phone_key, skeleton_key, latin_key), merged_into) in rows {
        let prepared = Prepared::of(&person(&row));
        let (p, k, l) = (prepared.phone(), prepared.skeleton(), prepared.latin());
        let province = provinces.get(&row.0).cloned().flatten();
        if phone_key.as_deref() != p || skeleton_key.as_deref() != k || latin_key.as_deref() != l {
            diesel::update(members::table.find(&row.0))
                .set((
                    members::phone_key.eq(p),
                    members::skeleton_key.eq(k),
                    members::latin_key.eq(l),
                ))
                .execute(conn)?;
            report.keys_written += 1;
        }
        if merged_into.is_some() {
            continue;
        }
        if let Some(province) = province {
            by_province
                .entry(province)
                .or_default()
                .push((row, prepared));
        }
    }
    for people in by_province.values_mut() {
        people.sort_by(|a, b| a.0.0.cmp(&b.0.0));
    }
    report.provinces = by_province.len();
    let total = by_province.len();
    let mut provinces_done = 0;
    let mut names: Vec<String> = by_province.keys().cloned().collect();
    names.sort();
    for province in names {
        let people = &by_province[&province];
        let prepared: Vec<Prepared> = people.iter().map(|(_, p)| p.clone()).collect();
        let (pairs, compared) = matching::pairs(&prepared, matching::PROPOSE_AT);
        report.compared += compared;
        // People are in id order (sorted above), as `within_cap` breaks ties.
        let points: Vec<(usize, usize, u32)> =
            pairs.iter().map(|(i, j, s)| (*i, *j, s.points)).collect();
        let keep = matching::within_cap(&points);
        let pairs = pairs
            .into_iter()
            .zip(keep)
            .filter_map(|(p, k)| k.then_some(p));
        let existing: HashMap<String, PairState> =
            pair_states!(conn, duplicate_pairs::province_code.eq(&province)).collect();
        let mut kept = HashSet::new();
        for (i, j, score) in pairs {
            let (x, y) = (&people[i], &people[j]);
            let (x, y) = if x.0.0 < y.0.0 { (x, y) } else { (y, x) };
            let f = Found {
                a: &x.0.0,
                b: &y.0.0,
                a_print: matching::fingerprint(&x.1),
                b_print: matching::fingerprint(&y.1),
                score,
            };
            let pid = pair_id(f.a, f.b);
            // Pairs of this province found before may sit under another province (a
            // member moved): look them up by id.
            let known = match existing.get(&pid) {
                Some(e) => Some(e.clone()),
                None => duplicate_pairs::table
                    .find(&pid)
                    .select((
                        duplicate_pairs::status,
                        duplicate_pairs::a_fingerprint,
                        duplicate_pairs::b_fingerprint,
                    ))
                    .first::<PairState>(conn)
                    .optional()?,
            };
            let unchanged_open = known.as_ref().is_some_and(|(s, a, b)| {
                s == PairStatus::Open.as_str() && *a == f.a_print && *b == f.b_print
            });
            if !unchanged_open && upsert(conn, Some(&province), &f, known.as_ref())? {
                report.proposed += 1;
            }
            report.pairs += 1;
            kept.insert(pid);
        }
        let withdrawn: Vec<&String> = existing
            .iter()
            .filter(|(pid, (status, _, _))| {
                status == PairStatus::Open.as_str() && !kept.contains(*pid)
            })
            .map(|(pid, _)| pid)
            .collect();
        report.withdrawn += withdrawn.len();
        for chunk in withdrawn.chunks(500) {
            diesel::delete(duplicate_pairs::table.filter(duplicate_pairs::id.eq_any(chunk)))
                .execute(conn)?;
        }
        provinces_done += 1;
        progress(provinces_done, total);
    }
    report.walk_ins = super::walk_ins::rescan(conn)?;
    Ok(report)
}
