//! Review queues: what admins decide on (conflicts, validation flags, quarantine, waiting
//! changes; possible duplicates; walk-ins). Each item has a stable id, is
//! scoped by the same rule as everything else (`domain::access::Actor::sees` on the
//! record's province and cooperative), and each decision is an audited row plus, where
//! data changes, a server change through `records::commit`.

pub mod conflicts;
pub mod duplicates;
pub mod flags;
pub mod pending;
pub mod quarantine;
pub mod walk_ins;

use crate::error::ApiError;

pub(crate) use crate::db::utc;

/// The `cursor` of the lists ranked by score (duplicates, walk-ins): `<score>.<id>` of
/// the last item of the previous page.
pub(crate) fn score_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::bad_request("invalid_cursor", "the cursor is invalid");
    let (score, id) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((score.parse().map_err(|_| bad())?, id.to_string()))
}

/// The `cursor` of the review lists: the id of the last item of the previous page.
pub(crate) fn before_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| {
            c.parse()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "the cursor is invalid"))
        })
        .transpose()
}
