//! The audit log: one row per sync, sign-in, admin action and quarantine, written in the
//! same transaction as the action it records.

use diesel::QueryResult;
use serde_json::Value;

use crate::db::{DbConnection, models::NewAuditEntry, now};

/// One event to record. `details` must not hold passwords, tokens, names or phone numbers.
#[derive(Debug, Default)]
pub struct AuditEvent<'a> {
    pub actor_user_id: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub outcome: &'a str,
    pub request_id: Option<&'a str>,
    pub details: Option<Value>,
}

impl AuditEvent<'_> {
    pub fn record(&self, conn: &mut DbConnection) -> QueryResult<()> {
        NewAuditEntry {
            occurred_at: now(),
            actor_user_id: self.actor_user_id,
            device_id: self.device_id,
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            outcome: if self.outcome.is_empty() {
                "success"
            } else {
                self.outcome
            },
            request_id: self.request_id,
            details: self
                .details
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_else(|| "{}".to_string()),
        }
        .insert(conn)
    }
}
