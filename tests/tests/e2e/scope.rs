//! The scope rule is stated once (`domain::scope::Scope`); its SQL forms (`db::scoped!`,
//! used by the pull, exports, review queues and record search, and `db::sql::Sql::in_scope`,
//! used by the reports) must select exactly the
//! documents the rule sees: every role, every assignment over two provinces and two
//! cooperatives, every placement of a record (including none).

use std::collections::BTreeSet;

use coopsync::{
    db::schema::documents,
    domain::{
        access::{Assignments, Role},
        scope::Scope,
    },
};
use coopsync_tests::{TestApp, dual_backend_tests};
use diesel::prelude::*;

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

fn the_sql_scope_selects_exactly_what_the_rule_sees(app: &TestApp) {
    let mut conn = app.db.connect();
    let now = chrono::Utc::now().naive_utc();
    let places = [None, Some("07"), Some("12")];
    let coops = [None, Some("c1"), Some("c2")];
    let mut placed = Vec::new();
    for p in places {
        for c in coops {
            let id = uuid::Uuid::new_v4().to_string();
            diesel::insert_into(documents::table)
                .values((
                    documents::id.eq(&id),
                    documents::doc_type.eq("member"),
                    documents::province_code.eq(p),
                    documents::cooperative_id.eq(c),
                    documents::snapshot.eq(Vec::<u8>::new()),
                    documents::heads.eq(""),
                    documents::change_count.eq(0i64),
                    documents::last_seq.eq(0i64),
                    documents::created_at.eq(now),
                    documents::updated_at.eq(now),
                ))
                .execute(&mut conn)
                .unwrap();
            placed.push((id, p, c));
        }
    }
    let subsets = |a: &str, b: &str| -> Vec<BTreeSet<String>> {
        vec![
            BTreeSet::new(),
            [a.to_string()].into(),
            [b.to_string()].into(),
            [a.to_string(), b.to_string()].into(),
        ]
    };
    let mut checked = 0;
    for role in [Role::NationalAdmin, Role::ProvincialAdmin, Role::Enumerator] {
        for provinces in subsets("07", "12") {
            for cooperatives in subsets("c1", "c2") {
                let scope = Scope::of(
                    role,
                    &Assignments {
                        provinces: provinces.clone(),
                        cooperatives,
                    },
                );
                let by_sql = coopsync::sync::pull::docs_in(&mut conn, &scope).unwrap();
                // The hand-written form the reports use.
                let mut raw = coopsync::db::sql::Sql::new(&conn);
                raw.push("SELECT id FROM documents d WHERE ")
                    .in_scope("d", &scope);
                let by_raw: BTreeSet<String> = raw
                    .load::<Id>(&mut conn)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                assert_eq!(by_raw, by_sql, "raw SQL form, {role:?} {scope:?}");
                let by_rule: BTreeSet<String> = placed
                    .iter()
                    .filter(|(_, p, c)| scope.sees(*p, *c))
                    .map(|(id, _, _)| id.clone())
                    .collect();
                assert_eq!(by_sql, by_rule, "{role:?} {scope:?}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 * 4 * 4);
}

dual_backend_tests!(the_sql_scope_selects_exactly_what_the_rule_sees);
