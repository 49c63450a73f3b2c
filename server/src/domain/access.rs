//! Roles and scopes: which records and which accounts a user may see or change.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Field enumerator or provincial cooperative promoter with a tablet.
    Enumerator,
    /// Reviews and manages the enumerators of their provinces.
    ProvincialAdmin,
    /// Manages everyone and everything.
    NationalAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Enumerator => "enumerator",
            Role::ProvincialAdmin => "provincial_admin",
            Role::NationalAdmin => "national_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "enumerator" => Some(Role::Enumerator),
            "provincial_admin" => Some(Role::ProvincialAdmin),
            "national_admin" => Some(Role::NationalAdmin),
            _ => None,
        }
    }

    pub fn is_admin(self) -> bool {
        matches!(self, Role::ProvincialAdmin | Role::NationalAdmin)
    }
}

/// What a user is assigned to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    pub provinces: BTreeSet<String>,
    pub cooperatives: BTreeSet<String>,
}

/// A signed-in user as the rules see them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: String,
    pub role: Role,
    pub assignments: Assignments,
}

/// An account as the rules see it when deciding who may manage it.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub user_id: &'a str,
    pub role: Role,
    pub assignments: &'a Assignments,
    /// The provinces of the assigned cooperatives per the projection, or `None` when one
    /// of them is not known to the server yet (it cannot be placed).
    pub cooperative_provinces: Option<&'a BTreeSet<String>>,
}

impl Actor {
    /// Whether the actor may see and change `target`'s account (not their own password
    /// or role: self-service is separate).
    pub fn can_manage(&self, target: &Target<'_>) -> bool {
        match self.role {
            Role::NationalAdmin => true,
            // The account's whole scope must lie inside the admin's: its provinces and
            // the provinces of its cooperatives. Otherwise an admin could reset its
            // password, sign in as it and read another province.
            Role::ProvincialAdmin => {
                target.role == Role::Enumerator
                    && !target.assignments.provinces.is_empty()
                    && target
                        .assignments
                        .provinces
                        .is_subset(&self.assignments.provinces)
                    && (target.assignments.cooperatives.is_empty()
                        || target
                            .cooperative_provinces
                            .is_some_and(|p| p.is_subset(&self.assignments.provinces)))
            }
            Role::Enumerator => false,
        }
    }

    /// Whether the actor may give an account this role and these assignments
    /// (`cooperative_provinces` as in [`Target`]).
    pub fn can_assign(
        &self,
        role: Role,
        assignments: &Assignments,
        cooperative_provinces: Option<&BTreeSet<String>>,
    ) -> bool {
        self.can_manage(&Target {
            user_id: "",
            role,
            assignments,
            cooperative_provinces,
        })
    }

    /// Whether the actor may leave a record at `province` / `cooperative` after a write.
    /// Reads and the record before a write use [`Actor::sees`]; a write is held to this
    /// stricter rule: a record the actor reaches only through a cooperative assignment
    /// must stay in that cooperative's province as the server knows it
    /// (`cooperative_province`), so an enumerator assigned one cooperative cannot move it
    /// (or a session of it) to a province he does not cover, out of its province admin's
    /// sight.
    pub fn may_place(
        &self,
        province: Option<&str>,
        cooperative: Option<&str>,
        cooperative_province: Option<&str>,
    ) -> bool {
        match self.role {
            Role::NationalAdmin => true,
            Role::ProvincialAdmin => self.sees(province, cooperative),
            Role::Enumerator => {
                province.is_some_and(|p| self.assignments.provinces.contains(p))
                    || (cooperative.is_some_and(|c| self.assignments.cooperatives.contains(c))
                        && province == cooperative_province)
            }
        }
    }

    /// Whether a record in `province` / `cooperative` is in the actor's scope (the one
    /// rule: `domain::scope::Scope`).
    pub fn sees(&self, province: Option<&str>, cooperative: Option<&str>) -> bool {
        self.scope().sees(province, cooperative)
    }

    pub fn scope(&self) -> super::scope::Scope {
        super::scope::Scope::of(self.role, &self.assignments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignments(provinces: &[&str]) -> Assignments {
        Assignments {
            provinces: provinces.iter().map(|s| s.to_string()).collect(),
            cooperatives: BTreeSet::new(),
        }
    }

    fn actor(role: Role, provinces: &[&str]) -> Actor {
        Actor {
            user_id: "a".into(),
            role,
            assignments: assignments(provinces),
        }
    }

    #[test]
    fn provincial_admin_manages_only_enumerators_wholly_inside_their_provinces() {
        let admin = actor(Role::ProvincialAdmin, &["07", "09"]);
        let inside = assignments(&["07"]);
        let straddling = assignments(&["07", "12"]);
        let none = assignments(&[]);
        assert!(admin.can_assign(Role::Enumerator, &inside, None));
        assert!(!admin.can_assign(Role::Enumerator, &straddling, None));
        assert!(!admin.can_assign(Role::Enumerator, &none, None));
        assert!(!admin.can_assign(Role::ProvincialAdmin, &inside, None));
    }

    #[test]
    fn provincial_admin_does_not_manage_an_enumerator_whose_cooperatives_lie_elsewhere() {
        let admin = actor(Role::ProvincialAdmin, &["07"]);
        let mut a = assignments(&["07"]);
        a.cooperatives.insert("c12".into());
        let in_12: BTreeSet<String> = ["12".to_string()].into();
        let in_07: BTreeSet<String> = ["07".to_string()].into();
        assert!(!admin.can_assign(Role::Enumerator, &a, Some(&in_12)));
        assert!(!admin.can_assign(Role::Enumerator, &a, None));
        assert!(admin.can_assign(Role::Enumerator, &a, Some(&in_07)));
    }

    #[test]
    fn enumerators_manage_nobody_and_national_admins_everybody() {
        let inside = assignments(&["07"]);
        assert!(!actor(Role::Enumerator, &["07"]).can_assign(Role::Enumerator, &inside, None));
        assert!(actor(Role::NationalAdmin, &[]).can_assign(Role::NationalAdmin, &inside, None));
    }

    #[test]
    fn a_cooperative_assignment_does_not_let_a_record_leave_its_province() {
        let mut e = actor(Role::Enumerator, &["07"]);
        e.assignments.cooperatives.insert("c1".into());
        // Editing the assigned cooperative (in 12) in place, and its sessions in 12.
        assert!(e.may_place(Some("12"), Some("c1"), Some("12")));
        // Moving it, or a session of it, to 05: refused; to his own 07: allowed.
        assert!(!e.may_place(Some("05"), Some("c1"), Some("12")));
        assert!(e.may_place(Some("07"), Some("c1"), Some("12")));
        // Whatever may be placed is seen.
        for (p, c, cp) in [
            (Some("12"), Some("c1"), Some("12")),
            (Some("07"), None, None),
            (None, Some("c1"), None),
        ] {
            assert_eq!(
                e.may_place(p, c, cp),
                e.sees(p, c) && (p == cp || p == Some("07"))
            );
        }
    }

    #[test]
    fn enumerator_sees_assigned_cooperatives_outside_their_provinces() {
        let mut e = actor(Role::Enumerator, &["07"]);
        e.assignments.cooperatives.insert("c1".into());
        assert!(e.sees(Some("12"), Some("c1")));
        assert!(e.sees(Some("07"), None));
        assert!(!e.sees(Some("12"), Some("c2")));
    }
}
