//! Typed ids. Every record id is a UUID made on the tablet, so records created offline
//! need no server round trip.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The one spelling of an id on the wire and in documents: lower-case, hyphenated,
/// 36 characters. Upper-case hex is read as the same id; braces, `urn:uuid:` and the
/// 32-digit form are not ids here (they would name a second record for one UUID).
pub fn canonical_id(s: &str) -> Option<String> {
    (s.len() == 36)
        .then(|| Uuid::parse_str(s).ok())
        .flatten()
        .map(|u| u.hyphenated().to_string())
}

/// Whether `s` is already in the canonical spelling of [`canonical_id`].
pub fn is_canonical_id(s: &str) -> bool {
    canonical_id(s).is_some_and(|c| c == s)
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// One synced record: a cooperative, a member or a training session.
    DocumentId
);
uuid_id!(
    /// One installation of the tablet app.
    DeviceId
);
uuid_id!(
    /// A cooperative's document id.
    CooperativeId
);
uuid_id!(
    /// A member's document id.
    MemberId
);
uuid_id!(
    /// A participant in a training session: a member's id, or a fresh id for a person
    /// not (yet) in any cooperative.
    ParticipantId
);
