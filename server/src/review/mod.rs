//! Review queues: what admins decide on (conflicts today). Each item has a stable id, is
//! scoped by the same rule as everything else (`domain::access::Actor::sees` on the
//! record's province and cooperative), and each decision is an audited row plus, where
//! data changes, a server change through `records::commit`.

pub mod conflicts;
pub mod flags;
pub mod pending;
pub mod quarantine;
