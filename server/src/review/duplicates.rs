//! Possible duplicate members in the caller's scope, found on demand by the duplicate
//! rules (`domain::matching`): members are compared within blocks (the same cooperative,
//! the same phone, the same Khmer consonant skeleton in one province), so a province's
//! few thousand members cost thousands of comparisons, not millions. Read-only: the
//! decisions (merge, not the same person) are not built yet.

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    auth::Principal,
    db::{
        DbConnection,
        schema::{documents, members},
    },
    domain::matching::{self, Person, Prepared},
    error::ApiError,
};

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DuplicateQuery {
    /// Members of this province (required for national admins: a province at a time).
    pub province: Option<String>,
    /// Members of this cooperative only.
    pub cooperative: Option<String>,
    /// Lowest score shown (default 55, the proposal threshold).
    pub min_score: Option<u32>,
    /// At most this many pairs, best first (1–500, default 50).
    pub limit: Option<usize>,
}

/// One member of a pair, as compared.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DuplicateSide {
    pub id: String,
    pub cooperative_id: Option<String>,
    pub province_code: Option<String>,
    pub full_name_khmer: Option<String>,
    pub name_latin: Option<String>,
    pub sex: Option<String>,
    pub year_of_birth: Option<i64>,
    pub phone: Option<String>,
    pub village: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MatchedRule {
    pub field: &'static str,
    pub rule: &'static str,
    pub points: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DuplicateCandidate {
    pub score: u32,
    pub rules: Vec<MatchedRule>,
    /// The rules in words: `same Khmer name (50) + same phone number (35) = 85`.
    pub explanation: String,
    pub a: DuplicateSide,
    pub b: DuplicateSide,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DuplicateListResponse {
    pub candidates: Vec<DuplicateCandidate>,
    /// Pairs compared (how much the blocks let through).
    pub compared: u64,
    /// Pairs at or above `min_score` before `limit`.
    pub found: u64,
}

type MemberRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

pub fn list(
    conn: &mut DbConnection,
    principal: &Principal,
    q: &DuplicateQuery,
) -> Result<DuplicateListResponse, ApiError> {
    principal.require_admin()?;
    let scope = principal.actor().scope();
    if scope.all && q.province.is_none() && q.cooperative.is_none() {
        return Err(ApiError::bad_request(
            "province_required",
            "duplicates are listed a province (or a cooperative) at a time: add province=<code>",
        ));
    }
    let min_score = q.min_score.unwrap_or(matching::PROPOSE_AT).min(100);
    let limit = crate::api::v1::page_size(q.limit);
    let mut query = members::table
        .select((
            members::id,
            members::cooperative_id,
            members::province_code,
            members::full_name_khmer,
            members::name_latin,
            members::sex,
            members::year_of_birth,
            members::phone,
            members::village,
        ))
        .into_boxed();
    if !scope.all {
        query = query.filter(
            members::id.eq_any(
                documents::table
                    .select(documents::id)
                    .filter(crate::db::scope_condition!(&scope)),
            ),
        );
    }
    if let Some(p) = &q.province {
        query = query.filter(
            members::id.eq_any(
                documents::table
                    .select(documents::id)
                    .filter(documents::province_code.eq(p.clone())),
            ),
        );
    }
    if let Some(c) = &q.cooperative {
        query = query.filter(members::cooperative_id.eq(c.to_ascii_lowercase()));
    }
    let rows: Vec<MemberRow> = query.load(conn)?;
    let sides: Vec<DuplicateSide> = rows
        .into_iter()
        .map(
            |(id, coop, prov, km, lat, sex, yob, phone, village)| DuplicateSide {
                id,
                cooperative_id: coop,
                province_code: prov,
                full_name_khmer: km,
                name_latin: lat,
                sex,
                year_of_birth: yob,
                phone,
                village,
            },
        )
        .collect();
    let prepared: Vec<Prepared> = sides
        .iter()
        .map(|s| {
            Prepared::of(&Person {
                name_khmer: s.full_name_khmer.clone(),
                name_latin: s.name_latin.clone(),
                sex: s.sex.clone(),
                year_of_birth: s.year_of_birth,
                phone: s.phone.clone(),
                village: s.village.clone(),
                cooperative_id: s.cooperative_id.clone(),
            })
        })
        .collect();
    // Blocks: members that share a cooperative, a phone, or a skeleton in a province.
    let mut blocks: HashMap<String, Vec<usize>> = HashMap::new();
    // The phone and skeleton keys are the prepared ones, computed once per member.
    for (i, (s, keys)) in sides.iter().zip(&prepared).enumerate() {
        if let Some(c) = &s.cooperative_id {
            blocks.entry(format!("c:{c}")).or_default().push(i);
        }
        if let Some(p) = keys.phone() {
            blocks.entry(format!("p:{p}")).or_default().push(i);
        }
        if let Some(k) = keys.skeleton() {
            let province = s.province_code.as_deref().unwrap_or("");
            blocks
                .entry(format!("k:{province}:{k}"))
                .or_default()
                .push(i);
        }
    }
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut found: BTreeMap<(std::cmp::Reverse<u32>, String, String), DuplicateCandidate> =
        BTreeMap::new();
    let mut compared = 0u64;
    for members in blocks.values() {
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                let pair = (i.min(j), i.max(j));
                if !seen.insert(pair) {
                    continue;
                }
                compared += 1;
                let score = matching::score_prepared(&prepared[pair.0], &prepared[pair.1]);
                if score.points < min_score {
                    continue;
                }
                let (a, b) = (&sides[pair.0], &sides[pair.1]);
                let (a, b) = if a.id <= b.id { (a, b) } else { (b, a) };
                found.insert(
                    (std::cmp::Reverse(score.points), a.id.clone(), b.id.clone()),
                    DuplicateCandidate {
                        score: score.points,
                        explanation: score.explain(),
                        rules: score
                            .matched
                            .iter()
                            .map(|m| MatchedRule {
                                field: m.field,
                                rule: m.rule,
                                points: m.points,
                            })
                            .collect(),
                        a: a.clone(),
                        b: b.clone(),
                    },
                );
            }
        }
    }
    let total = found.len() as u64;
    Ok(DuplicateListResponse {
        candidates: found.into_values().take(limit).collect(),
        compared,
        found: total,
    })
}
