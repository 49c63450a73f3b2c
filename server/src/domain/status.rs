//! The statuses of review items, one enum each, used by the queues (`review`) and by the
//! projection that opens and closes them (`sync`): never string literals in queries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a conflict stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStatus {
    /// Concurrent values wait for a decision.
    Open,
    /// A later edit of the field (by anyone) replaced all the concurrent values.
    Superseded,
    /// An admin chose the value.
    Resolved,
}

impl ConflictStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Superseded => "superseded",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "superseded" => Some(Self::Superseded),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// Where a flag stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagStatus {
    Open,
    /// An admin accepted the value as it is.
    Accepted,
    /// A later change (a tablet's, or an admin's correction) fixed it.
    Fixed,
}

impl FlagStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "accepted" => Some(Self::Accepted),
            "fixed" => Some(Self::Fixed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Accepted => "accepted",
            Self::Fixed => "fixed",
        }
    }
}

/// Where a quarantined change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineStatus {
    Open,
    Released,
    Dismissed,
}

impl QuarantineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Released => "released",
            Self::Dismissed => "dismissed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "released" => Some(Self::Released),
            "dismissed" => Some(Self::Dismissed),
            _ => None,
        }
    }
}

/// Where a possible-duplicate pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PairStatus {
    /// Proposed, waiting for a decision.
    Open,
    /// An admin merged one into the other (undoing the merge opens the pair again).
    Merged,
    /// An admin said they are two people: not proposed again unless one of them changes
    /// a compared field.
    NotSame,
}

impl PairStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Merged => "merged",
            Self::NotSame => "not_same",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "merged" => Some(Self::Merged),
            "not_same" => Some(Self::NotSame),
            _ => None,
        }
    }
}

/// Where a walk-in (an attendance entry of someone with no member record) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalkInStatus {
    /// Waiting for an admin: link to a member or register as a new one.
    Open,
    /// Linked to an existing member (a server change set the entry's `member_id`).
    Linked,
    /// Registered as a new member record, to which the entry is linked.
    Promoted,
}

impl WalkInStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Linked => "linked",
            Self::Promoted => "promoted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "linked" => Some(Self::Linked),
            "promoted" => Some(Self::Promoted),
            _ => None,
        }
    }
}
