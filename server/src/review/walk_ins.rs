//! The walk-ins queue: attendance entries of people with no member record (found as
//! sessions arrive, `records::walk_ins`), each with the members it may be. An admin **links**
//! one to an existing member (a server change sets the entry's `member_id`: reports count
//! her as that member from then on), **promotes** it to a new member record (a server
//! change creates the member from the entry, a second links the entry to it), or
//! **undoes** either (a server change clears `member_id`; a member record created stays,
//! as nothing is deleted). The entry keeps the name, sex, age and phone it was recorded
//! with. Scoped by the session's province and cooperative, audited.

use automerge::{ReadDoc, ScalarValue, transaction::Transactable};
use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sync_protocol::documents::{DocType, Member};
use utoipa::ToSchema;

use super::{
    duplicates::{DuplicateSide, MatchedRule, explain, require_visible, sides, survivor_of},
    utc,
};
use crate::{
    audit::AuditEvent,
    auth::Principal,
    db::{
        DbConnection, now,
        schema::{attendance, cooperatives, documents, training_sessions, walk_ins},
    },
    domain::{matching::Person, status::WalkInStatus},
    error::{ApiError, FieldError},
    records::walk_ins::{SessionKeys, StoredCandidate},
    records::{self, CommitError},
};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WalkInQuery {
    /// `open` (default), `linked`, `promoted` or `all`.
    pub status: Option<String>,
    /// Walk-ins at sessions in this province.
    pub province: Option<String>,
    /// Walk-ins at sessions of this cooperative.
    pub cooperative: Option<String>,
    /// Lowest best-candidate score shown (default 0: walk-ins with no candidate too).
    pub min_score: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–500, default 50.
    pub limit: Option<usize>,
}

/// The attendance entry as recorded (and as it is now).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalkInEntry {
    pub name: Option<String>,
    pub sex: Option<String>,
    pub age: Option<i64>,
    pub phone: Option<String>,
    /// `present`, `absent`, `partial`.
    pub status: Option<String>,
    pub hours: Option<f64>,
    /// The member the entry points at now (set by a link or promotion).
    pub member_id: Option<String>,
}

/// The session the walk-in attended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalkInSession {
    pub id: String,
    pub programme: Option<String>,
    pub module: Option<String>,
    pub scheduled_date: Option<String>,
    pub cooperative_id: Option<String>,
    pub group_name: Option<String>,
    pub province_code: Option<String>,
}

/// A member the walk-in may be.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalkInCandidate {
    pub member: DuplicateSide,
    pub score: u32,
    pub rules: Vec<MatchedRule>,
    /// `same Khmer name (40) + same phone number (35) = 75`.
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalkIn {
    /// The walk-in's id (one attendance entry is always the same id).
    pub id: String,
    pub status: WalkInStatus,
    pub participant_id: String,
    pub entry: WalkInEntry,
    pub session: WalkInSession,
    /// The best candidate's score (0: no member reaches the proposal threshold).
    pub score: u32,
    /// Members it may be, best first (at most 5; merged members and members outside
    /// your scope left out).
    pub candidates: Vec<WalkInCandidate>,
    /// The member it was linked or promoted to.
    pub member_id: Option<String>,
    pub found_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalkInListResponse {
    pub walk_ins: Vec<WalkIn>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The member the walk-in is (a merged member's id links to its survivor).
    pub member_id: String,
}

/// The new member's fields; each defaults to the entry's (the name goes to
/// `full_name_khmer` or `name_latin` by its letters, the age gives the year of birth at
/// the session's date, the cooperative is the session's, the role `member`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub cooperative_id: Option<String>,
    pub full_name_khmer: Option<String>,
    pub name_latin: Option<String>,
    pub sex: Option<String>,
    pub year_of_birth: Option<i64>,
    pub village: Option<String>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalkInDecision {
    pub walk_in: WalkIn,
    /// The member linked to (or unlinked from).
    pub member_id: String,
    /// True when the promotion created the member record (false: linked, undone, or a
    /// promotion undone before whose record was linked again).
    pub member_created: bool,
    /// The server changes of the action (tablets pull them).
    pub change_hashes: Vec<String>,
}

type WalkInRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    NaiveDateTime,
    Option<String>,
    Option<NaiveDateTime>,
);

macro_rules! walk_in_columns {
    () => {
        (
            walk_ins::id,
            walk_ins::session_id,
            walk_ins::participant_id,
            walk_ins::score,
            walk_ins::candidates,
            walk_ins::status,
            walk_ins::member_id,
            walk_ins::found_at,
            walk_ins::decided_by,
            walk_ins::decided_at,
        )
    };
}

type SessionRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

type EntryRow = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<String>,
);

/// The columns of an `EntryRow`.
macro_rules! entry_columns {
    () => {
        (
            attendance::name,
            attendance::sex,
            attendance::age,
            attendance::phone,
            attendance::status,
            attendance::hours,
            attendance::member_id,
        )
    };
}

/// The attendance entry as projected now.
fn entry_row(
    conn: &mut DbConnection,
    session_id: &str,
    participant_id: &str,
) -> Result<Option<EntryRow>, ApiError> {
    Ok(attendance::table
        .find((session_id, participant_id))
        .select(entry_columns!())
        .first(conn)
        .optional()?)
}

/// The rows as the API shows them (sessions, entries and candidates read per page).
fn shown(
    conn: &mut DbConnection,
    principal: &Principal,
    rows: Vec<WalkInRow>,
) -> Result<Vec<WalkIn>, ApiError> {
    let session_ids: Vec<&String> = rows.iter().map(|r| &r.1).collect();
    let sessions: std::collections::HashMap<String, SessionRow> = training_sessions::table
        .filter(training_sessions::id.eq_any(&session_ids))
        .select((
            training_sessions::id,
            training_sessions::programme,
            training_sessions::module,
            training_sessions::scheduled_date,
            training_sessions::cooperative_id,
            training_sessions::group_name,
            training_sessions::province_code,
        ))
        .load::<SessionRow>(conn)?
        .into_iter()
        .map(|r| (r.0.clone(), r))
        .collect();
    let mut stored: Vec<Vec<StoredCandidate>> = Vec::with_capacity(rows.len());
    for r in &rows {
        stored.push(serde_json::from_str(&r.4).map_err(ApiError::internal)?);
    }
    let member_ids: Vec<&String> = stored.iter().flatten().map(|c| &c.member_id).collect();
    let members = sides(conn, &member_ids)?;
    // The page's entries in one statement (by session, then the participants asked for),
    // not one look-up per row.
    let participant_ids: Vec<&String> = rows.iter().map(|r| &r.2).collect();
    let entries: std::collections::HashMap<(String, String), EntryRow> = attendance::table
        .filter(attendance::session_id.eq_any(&session_ids))
        .filter(attendance::participant_id.eq_any(&participant_ids))
        .select((
            attendance::session_id,
            attendance::participant_id,
            entry_columns!(),
        ))
        .load::<(String, String, EntryRow)>(conn)?
        .into_iter()
        .map(|(s, p, e)| ((s, p), e))
        .collect();
    let actor = principal.actor();
    let mut out = Vec::with_capacity(rows.len());
    for (r, stored) in rows.into_iter().zip(stored) {
        let entry = entries
            .get(&(r.1.clone(), r.2.clone()))
            .cloned()
            .unwrap_or_default();
        let s = sessions.get(&r.1).cloned().unwrap_or_default();
        let candidates = stored
            .into_iter()
            .filter_map(|c| {
                let m = members.get(&c.member_id)?;
                if m.merged_into.is_some()
                    || !actor.sees(m.province_code.as_deref(), m.cooperative_id.as_deref())
                {
                    return None;
                }
                let rules: Vec<MatchedRule> = serde_json::from_value(c.rules).unwrap_or_default();
                let explanation = explain(&rules, c.score);
                Some(WalkInCandidate {
                    member: m.clone(),
                    score: c.score,
                    rules,
                    explanation,
                })
            })
            .collect();
        out.push(WalkIn {
            id: r.0,
            status: WalkInStatus::parse(&r.5)
                .ok_or_else(|| ApiError::internal("walk-in status"))?,
            participant_id: r.2,
            entry: WalkInEntry {
                name: entry.0,
                sex: entry.1,
                age: entry.2,
                phone: entry.3,
                status: entry.4,
                hours: entry.5,
                member_id: entry.6,
            },
            session: WalkInSession {
                id: r.1,
                programme: s.1,
                module: s.2,
                scheduled_date: s.3,
                cooperative_id: s.4,
                group_name: s.5,
                province_code: s.6,
            },
            score: u32::try_from(r.3).unwrap_or_default(),
            candidates,
            member_id: r.6,
            found_at: utc(r.7),
            decided_by: r.8,
            decided_at: r.9.map(utc),
        });
    }
    Ok(out)
}

/// Walk-ins at sessions in the caller's scope, best candidate first.
pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    q: &WalkInQuery,
) -> Result<WalkInListResponse, ApiError> {
    principal.require_admin()?;
    let scope = principal.actor().scope();
    let limit = crate::api::v1::page_size(q.limit);
    let status = match q.status.as_deref().unwrap_or("open") {
        "all" => None,
        s => Some(WalkInStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "status is one of open, linked, promoted, all",
            )
        })?),
    };
    let mut query = walk_ins::table.select(walk_in_columns!()).into_boxed();
    if let Some(s) = status {
        query = query.filter(walk_ins::status.eq(s.as_str()));
    }
    if !scope.all {
        // The provinces pick the rows by index (`walk_ins_list`), then the rule's exact
        // test on the session (as the duplicates queue does: one province as `=`).
        let provinces: Vec<String> = scope.provinces.iter().cloned().collect();
        let coops: Vec<String> = scope.cooperatives.iter().cloned().collect();
        if coops.is_empty() {
            query = match provinces.as_slice() {
                [one] => query.filter(walk_ins::province_code.eq(one.clone())),
                _ => query.filter(walk_ins::province_code.eq_any(provinces)),
            };
        }
        query = query.filter(
            walk_ins::session_id.eq_any(
                documents::table
                    .select(documents::id)
                    .filter(crate::db::scope_condition!(&scope)),
            ),
        );
    }
    if let Some(p) = &q.province {
        query = query.filter(walk_ins::province_code.eq(p.clone()));
    }
    if let Some(c) = &q.cooperative {
        query = query.filter(walk_ins::cooperative_id.eq(c.to_ascii_lowercase()));
    }
    if let Some(m) = q.min_score {
        query = query.filter(walk_ins::score.ge(i64::from(m)));
    }
    if let Some(c) = &q.cursor {
        let (score, id) = super::score_cursor(c)?;
        query = query.filter(
            walk_ins::score
                .lt(score)
                .or(walk_ins::score.eq(score).and(walk_ins::id.gt(id))),
        );
    }
    let rows: Vec<WalkInRow> = query
        .order((walk_ins::score.desc(), walk_ins::id.asc()))
        .limit(limit as i64 + 1)
        .load(conn)?;
    let more = rows.len() > limit;
    let rows: Vec<WalkInRow> = rows.into_iter().take(limit).collect();
    let next_cursor = more
        .then(|| rows.last().map(|r| format!("{}.{}", r.3, r.0)))
        .flatten();
    Ok(WalkInListResponse {
        walk_ins: shown(conn, principal, rows)?,
        next_cursor,
    })
}

/// One walk-in whose session the caller may see.
pub fn get(conn: &mut DbConnection, principal: &Principal, id: &str) -> Result<WalkIn, ApiError> {
    let row = visible_row(conn, principal, id)?;
    shown(conn, principal, vec![row])?
        .pop()
        .ok_or(ApiError::NotFound("walk-in"))
}

fn visible_row(
    conn: &mut DbConnection,
    principal: &Principal,
    id: &str,
) -> Result<WalkInRow, ApiError> {
    principal.require_admin()?;
    let row: WalkInRow = walk_ins::table
        .find(id.to_ascii_lowercase())
        .select(walk_in_columns!())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("walk-in"))?;
    require_visible(conn, principal, &[&row.1], "walk-in")?;
    Ok(row)
}

/// An open walk-in the caller may decide on: its session and participant.
fn open_row(
    conn: &mut DbConnection,
    principal: &Principal,
    id: &str,
) -> Result<WalkInRow, ApiError> {
    let row = visible_row(conn, principal, id)?;
    if row.5 != WalkInStatus::Open.as_str() {
        return Err(ApiError::Conflict {
            code: "walk_in_not_open",
            message: format!("this walk-in is {} already; undo that first", row.5),
        });
    }
    Ok(row)
}

/// A member (by id, or the survivor a merged id forwards to) in the caller's scope.
fn visible_member(
    conn: &mut DbConnection,
    principal: &Principal,
    member_id: &str,
) -> Result<String, ApiError> {
    let member = survivor_of(conn, &member_id.trim().to_ascii_lowercase())?;
    let place: Option<(String, Option<String>, Option<String>)> = documents::table
        .find(&member)
        .select((
            documents::doc_type,
            documents::province_code,
            documents::cooperative_id,
        ))
        .first(conn)
        .optional()?;
    match place {
        Some((t, p, c))
            if t == DocType::Member.as_str()
                && principal.actor().sees(p.as_deref(), c.as_deref()) =>
        {
            Ok(member)
        }
        _ => Err(ApiError::validation(
            "member_id",
            "unknown_member",
            "no member with this id in your scope",
        )),
    }
}

/// Marks the walk-in decided, before the server change: the projection that follows the
/// change must find it decided, not open (it would withdraw it).
fn mark(
    conn: &mut DbConnection,
    id: &str,
    status: WalkInStatus,
    member_id: Option<&str>,
    by: Option<&str>,
) -> Result<(), ApiError> {
    diesel::update(walk_ins::table.find(id))
        .set((
            walk_ins::status.eq(status.as_str()),
            walk_ins::member_id.eq(member_id),
            walk_ins::decided_by.eq(by),
            walk_ins::decided_at.eq(by.map(|_| now())),
            walk_ins::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The server change that points the entry at `member` (or clears it: `None`).
fn set_member(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    session_id: &str,
    participant_id: &str,
    member: Option<&str>,
) -> Result<String, ApiError> {
    let field = format!("attendance.{participant_id}.member_id");
    let committed = records::change(conn, actor, &principal.user_id, session_id, |tx, base| {
        let (obj, key) = records::edit::locate(base, &field)
            .map_err(|_| automerge::AutomergeError::InvalidObjId(field.clone()))?;
        match member {
            Some(m) => tx.put(&obj, key.as_str(), ScalarValue::Str(m.into())),
            None if base.get(&obj, key.as_str())?.is_some() => tx.delete(&obj, key.as_str()),
            None => Ok(()),
        }
    });
    match committed {
        Ok(c) => Ok(c.hash),
        Err(CommitError::Edit(_)) => Err(ApiError::Conflict {
            code: "walk_in_changed",
            message: "the attendance entry is no longer in the session".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

fn audit(
    conn: &mut DbConnection,
    principal: &Principal,
    action: &str,
    row: &WalkInRow,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    AuditEvent {
        actor_user_id: Some(&principal.user_id),
        device_id: Some(&principal.device_id),
        action,
        target_type: Some("training_session"),
        target_id: Some(&row.1),
        outcome: "success",
        request_id: principal.request_id.as_deref(),
        // Ids only: the entry's name and phone stay out of the log.
        details: Some(details),
    }
    .record(conn)?;
    Ok(())
}

/// Links the walk-in to an existing member.
pub fn link(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    id: &str,
    req: &LinkRequest,
) -> Result<WalkInDecision, ApiError> {
    let row = open_row(conn, principal, id)?;
    let member = visible_member(conn, principal, &req.member_id)?;
    mark(
        conn,
        &row.0,
        WalkInStatus::Linked,
        Some(&member),
        Some(&principal.user_id),
    )?;
    let hash = set_member(conn, actor, principal, &row.1, &row.2, Some(&member))?;
    audit(
        conn,
        principal,
        "walk_in.link",
        &row,
        serde_json::json!({"walk_in_id": row.0, "participant_id": row.2, "member_id": member, "change_hashes": [hash]}),
    )?;
    Ok(WalkInDecision {
        walk_in: get(conn, principal, &row.0)?,
        member_id: member,
        member_created: false,
        change_hashes: vec![hash],
    })
}

/// The id of the member a walk-in is promoted to: promoting it again after an undo
/// links the same record, never a second one.
pub fn promoted_member_id(walk_in_id: &str) -> String {
    const PROMOTED: uuid::Uuid = uuid::Uuid::from_u128(0x4b9a_06d2_e1c7_4a35_9f80_2d6b_c3e8_5a17);
    uuid::Uuid::new_v5(&PROMOTED, walk_in_id.as_bytes()).to_string()
}

/// Registers the walk-in as a new member (fields from the entry unless `req` gives
/// them, validated like a tablet's member) and links the entry to it.
pub fn promote(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    id: &str,
    req: &PromoteRequest,
) -> Result<WalkInDecision, ApiError> {
    let row = open_row(conn, principal, id)?;
    let entry = entry_row(conn, &row.1, &row.2)?.ok_or(ApiError::NotFound("walk-in"))?;
    let (session_coop, date): (Option<String>, Option<String>) = training_sessions::table
        .find(&row.1)
        .select((
            training_sessions::cooperative_id,
            training_sessions::scheduled_date,
        ))
        .first(conn)?;
    let mut problems = Vec::new();
    let cooperative = req
        .cooperative_id
        .as_deref()
        .map(|c| c.trim().to_ascii_lowercase())
        .or(session_coop);
    let coop_province = match &cooperative {
        None => {
            problems.push(FieldError::new(
                "cooperative_id",
                "required",
                "the session has no cooperative: name the cooperative she joins",
            ));
            None
        }
        Some(c) => {
            let place: Option<(Option<String>, Option<String>)> = cooperatives::table
                .inner_join(documents::table)
                .filter(cooperatives::id.eq(c))
                .select((documents::province_code, documents::cooperative_id))
                .first(conn)
                .optional()?;
            match place {
                Some((p, c)) if principal.actor().sees(p.as_deref(), c.as_deref()) => p,
                _ => {
                    problems.push(FieldError::new(
                        "cooperative_id",
                        "unknown_cooperative",
                        "no cooperative with this id in your scope",
                    ));
                    None
                }
            }
        }
    };
    let year = SessionKeys::new(None, None, date.as_deref()).year;
    let person = Person::walk_in(
        entry.0.as_deref(),
        entry.1.as_deref(),
        entry.2,
        entry.3.as_deref(),
        None,
        year,
    );
    let member = Member {
        cooperative_id: cooperative,
        full_name_khmer: req.full_name_khmer.clone().or(person.name_khmer),
        name_latin: req.name_latin.clone().or(person.name_latin),
        sex: req.sex.clone().or(person.sex),
        year_of_birth: req.year_of_birth.or(person.year_of_birth),
        phone: entry.3.clone(),
        province_code: coop_province,
        village: req.village.clone(),
        role: Some(req.role.clone().unwrap_or_else(|| "member".into())),
        joined_date: None,
        merged_into: None,
    };
    let this_year = i64::from(Utc::now().year());
    for f in member.validate(this_year) {
        let message = match (f.field.as_str(), f.code.as_str()) {
            ("full_name_khmer", "missing_required_field") => {
                "the walk-in's name is not in Khmer letters: give her name in Khmer".to_string()
            }
            _ => f.message,
        };
        problems.push(FieldError::new(&f.field, &f.code, message));
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let member_id = promoted_member_id(&row.0);
    mark(
        conn,
        &row.0,
        WalkInStatus::Promoted,
        Some(&member_id),
        Some(&principal.user_id),
    )?;
    let mut hashes = Vec::new();
    let created = match records::create(
        conn,
        actor,
        &principal.user_id,
        &member_id,
        DocType::Member,
        |tx| member.write(tx, true),
    ) {
        Ok(c) => {
            hashes.push(c.hash);
            true
        }
        // Promoted before and undone: the same record is linked again as it is.
        Err(CommitError::Exists) => false,
        Err(e) => return Err(e.into()),
    };
    hashes.push(set_member(
        conn,
        actor,
        principal,
        &row.1,
        &row.2,
        Some(&member_id),
    )?);
    audit(
        conn,
        principal,
        "walk_in.promote",
        &row,
        serde_json::json!({"walk_in_id": row.0, "participant_id": row.2, "member_id": member_id,
            "member_created": created, "change_hashes": hashes}),
    )?;
    Ok(WalkInDecision {
        walk_in: get(conn, principal, &row.0)?,
        member_id,
        member_created: created,
        change_hashes: hashes,
    })
}

/// Undoes a link or a promotion: a server change clears the entry's `member_id` (only if
/// it still names the member the decision set), and the walk-in is open again. A member
/// record a promotion created stays (nothing is deleted); promoting again links it.
pub fn undo(
    conn: &mut DbConnection,
    actor: &automerge::ActorId,
    principal: &Principal,
    id: &str,
) -> Result<WalkInDecision, ApiError> {
    let row = visible_row(conn, principal, id)?;
    let Some(member) = row
        .6
        .clone()
        .filter(|_| row.5 != WalkInStatus::Open.as_str())
    else {
        return Err(ApiError::Conflict {
            code: "walk_in_not_decided",
            message: "this walk-in is open: there is nothing to undo".into(),
        });
    };
    let now_linked: Option<Option<String>> = attendance::table
        .find((&row.1, &row.2))
        .select(attendance::member_id)
        .first(conn)
        .optional()?;
    if now_linked.flatten().as_deref() != Some(member.as_str()) {
        return Err(ApiError::Conflict {
            code: "walk_in_changed",
            message: "a tablet has changed this entry's member since: correct the record instead"
                .into(),
        });
    }
    let hash = set_member(conn, actor, principal, &row.1, &row.2, None)?;
    // The projection reopens it when detection is on; said here too, for when it is off.
    mark(conn, &row.0, WalkInStatus::Open, None, None)?;
    audit(
        conn,
        principal,
        "walk_in.unlink",
        &row,
        serde_json::json!({"walk_in_id": row.0, "participant_id": row.2, "member_id": member,
            "was": row.5, "change_hashes": [hash]}),
    )?;
    Ok(WalkInDecision {
        walk_in: get(conn, principal, &row.0)?,
        member_id: member,
        member_created: false,
        change_hashes: vec![hash],
    })
}
