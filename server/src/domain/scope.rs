//! The scope rule, stated once: which records a user sees. National admins see every
//! record; provincial admins the records of their provinces; enumerators the records of
//! their provinces and of the cooperatives assigned to them. A record's place is its
//! province and cooperative (`documents.province_code`, `documents.cooperative_id`).
//! `Scope::sees` is the rule for one record; `db::scoped!` applies the same rule to
//! `documents` in SQL (pull, exports, review queues, record search), `db::sql::Sql::in_scope`
//! in the reports' hand-written SQL, and a test pins all three together
//! (`scope::*::the_sql_scope_selects_exactly_what_the_rule_sees`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::access::{Assignments, Role};

/// What a user may see, as the rule needs it (also stored per device between pulls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Everything (national admins).
    pub all: bool,
    pub provinces: BTreeSet<String>,
    /// Cooperatives seen whatever their province (enumerators' assignments).
    pub cooperatives: BTreeSet<String>,
}

impl Scope {
    pub fn of(role: Role, assignments: &Assignments) -> Self {
        match role {
            Role::NationalAdmin => Scope {
                all: true,
                provinces: BTreeSet::new(),
                cooperatives: BTreeSet::new(),
            },
            Role::ProvincialAdmin => Scope {
                all: false,
                provinces: assignments.provinces.clone(),
                cooperatives: BTreeSet::new(),
            },
            Role::Enumerator => Scope {
                all: false,
                provinces: assignments.provinces.clone(),
                cooperatives: assignments.cooperatives.clone(),
            },
        }
    }

    /// Whether a record in `province` / `cooperative` is in this scope.
    pub fn sees(&self, province: Option<&str>, cooperative: Option<&str>) -> bool {
        self.all
            || province.is_some_and(|p| self.provinces.contains(p))
            || cooperative.is_some_and(|c| self.cooperatives.contains(c))
    }
}
