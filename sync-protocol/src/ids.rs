//! Typed ids. Every record id is a UUID made on the tablet, so records created offline
//! need no server round trip.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
