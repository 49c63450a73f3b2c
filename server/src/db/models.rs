//! Rows of the account, device, token and audit tables, with their queries.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{DbConnection, schema::*};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = provinces, primary_key(code))]
pub struct Province {
    pub code: String,
    pub iso_code: String,
    pub name_latin: String,
    pub name_khmer: String,
    pub kind: String,
}

impl Province {
    pub fn all(conn: &mut DbConnection) -> QueryResult<Vec<Province>> {
        provinces::table
            .order(provinces::code)
            .select(Province::as_select())
            .load(conn)
    }

    /// The subset of `codes` that are known provinces.
    pub fn existing(conn: &mut DbConnection, codes: &[String]) -> QueryResult<Vec<String>> {
        provinces::table
            .filter(provinces::code.eq_any(codes))
            .select(provinces::code)
            .load(conn)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub username: String,
    pub full_name: Option<String>,
    pub role: String,
    pub password_hash: String,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub password_changed_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub full_name: Option<&'a str>,
    pub role: &'a str,
    pub password_hash: &'a str,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub password_changed_at: NaiveDateTime,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChangeset {
    pub full_name: Option<Option<String>>,
    pub role: Option<String>,
    pub active: Option<bool>,
    pub password_hash: Option<String>,
    pub password_changed_at: Option<NaiveDateTime>,
    pub updated_at: Option<NaiveDateTime>,
}

impl User {
    pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<User>> {
        users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_username(conn: &mut DbConnection, username: &str) -> QueryResult<Option<User>> {
        users::table
            .filter(users::username.eq(username))
            .select(User::as_select())
            .first(conn)
            .optional()
    }

    pub fn provinces(conn: &mut DbConnection, id: &str) -> QueryResult<Vec<String>> {
        user_provinces::table
            .filter(user_provinces::user_id.eq(id))
            .order(user_provinces::province_code)
            .select(user_provinces::province_code)
            .load(conn)
    }

    pub fn cooperatives(conn: &mut DbConnection, id: &str) -> QueryResult<Vec<String>> {
        user_cooperatives::table
            .filter(user_cooperatives::user_id.eq(id))
            .order(user_cooperatives::cooperative_id)
            .select(user_cooperatives::cooperative_id)
            .load(conn)
    }

    pub fn set_assignments(
        conn: &mut DbConnection,
        id: &str,
        province_codes: &[String],
        cooperative_ids: &[String],
    ) -> QueryResult<()> {
        diesel::delete(user_provinces::table.filter(user_provinces::user_id.eq(id)))
            .execute(conn)?;
        diesel::delete(user_cooperatives::table.filter(user_cooperatives::user_id.eq(id)))
            .execute(conn)?;
        for code in province_codes {
            diesel::insert_into(user_provinces::table)
                .values((
                    user_provinces::user_id.eq(id),
                    user_provinces::province_code.eq(code),
                ))
                .execute(conn)?;
        }
        for coop in cooperative_ids {
            diesel::insert_into(user_cooperatives::table)
                .values((
                    user_cooperatives::user_id.eq(id),
                    user_cooperatives::cooperative_id.eq(coop),
                ))
                .execute(conn)?;
        }
        Ok(())
    }

    /// Users ordered by username, starting after `after` (keyset pagination).
    pub fn page(
        conn: &mut DbConnection,
        after: Option<&str>,
        limit: i64,
    ) -> QueryResult<Vec<User>> {
        let mut query = users::table.select(User::as_select()).into_boxed();
        if let Some(after) = after {
            query = query.filter(users::username.gt(after.to_string()));
        }
        query.order(users::username).limit(limit).load(conn)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = devices)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
    pub revoked_by: Option<String>,
    pub token_epoch: i64,
}

impl Device {
    pub fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Device>> {
        devices::table
            .find(id)
            .select(Device::as_select())
            .first(conn)
            .optional()
    }

    pub fn for_users(conn: &mut DbConnection, user_ids: &[String]) -> QueryResult<Vec<Device>> {
        devices::table
            .filter(devices::user_id.eq_any(user_ids))
            .order((devices::user_id, devices::created_at))
            .select(Device::as_select())
            .load(conn)
    }

    pub fn all(conn: &mut DbConnection) -> QueryResult<Vec<Device>> {
        devices::table
            .order((devices::user_id, devices::created_at))
            .select(Device::as_select())
            .load(conn)
    }

    /// Invalidates every token of the device: refresh tokens are revoked and the epoch
    /// carried by access tokens moves on, so both stop working at once.
    pub fn revoke_tokens(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::device_id.eq(id))
                .filter(refresh_tokens::status.ne("revoked")),
        )
        .set(refresh_tokens::status.eq("revoked"))
        .execute(conn)?;
        diesel::update(devices::table.find(id))
            .set(devices::token_epoch.eq(devices::token_epoch + 1))
            .execute(conn)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub id: String,
    pub device_id: String,
    pub user_id: String,
    pub token_hash: String,
    pub parent_id: Option<String>,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub superseded_at: Option<NaiveDateTime>,
    pub retry_used: bool,
}

impl RefreshToken {
    pub fn find_by_hash(conn: &mut DbConnection, hash: &str) -> QueryResult<Option<RefreshToken>> {
        refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(hash))
            .select(RefreshToken::as_select())
            .first(conn)
            .optional()
    }

    pub fn child_of(conn: &mut DbConnection, id: &str) -> QueryResult<Option<RefreshToken>> {
        refresh_tokens::table
            .filter(refresh_tokens::parent_id.eq(id))
            .order(refresh_tokens::created_at.desc())
            .select(RefreshToken::as_select())
            .first(conn)
            .optional()
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    pub actor_user_id: Option<String>,
    pub device_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub details: String,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = audit_log)]
pub struct NewAuditEntry<'a> {
    pub occurred_at: NaiveDateTime,
    pub actor_user_id: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub outcome: &'a str,
    pub request_id: Option<&'a str>,
    pub details: String,
}

impl NewAuditEntry<'_> {
    pub fn insert(&self, conn: &mut DbConnection) -> QueryResult<()> {
        diesel::insert_into(audit_log::table)
            .values(self)
            .execute(conn)
            .map(|_| ())
    }
}

impl AuditEntry {
    pub fn page(
        conn: &mut DbConnection,
        before: Option<i64>,
        limit: i64,
    ) -> QueryResult<Vec<AuditEntry>> {
        let mut query = audit_log::table
            .select(AuditEntry::as_select())
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(audit_log::id.lt(before));
        }
        query.order(audit_log::id.desc()).limit(limit).load(conn)
    }
}

/// Failed sign-ins, counted per account over a sliding window.
pub struct LoginFailure;

impl LoginFailure {
    pub fn record(conn: &mut DbConnection, username: &str, ip: &str) -> QueryResult<()> {
        diesel::insert_into(login_failures::table)
            .values((
                login_failures::username.eq(username),
                login_failures::client_ip.eq(ip),
                login_failures::failed_at.eq(super::now()),
            ))
            .execute(conn)
            .map(|_| ())
    }

    /// Failures since `since` (from `ip` only, when given), and the oldest of them (which
    /// decides Retry-After).
    pub fn recent(
        conn: &mut DbConnection,
        username: &str,
        ip: Option<&str>,
        since: NaiveDateTime,
    ) -> QueryResult<(i64, Option<NaiveDateTime>)> {
        let rows = || {
            let mut q = login_failures::table
                .filter(login_failures::username.eq(username))
                .filter(login_failures::failed_at.gt(since))
                .into_boxed();
            if let Some(ip) = ip {
                q = q.filter(login_failures::client_ip.eq(ip.to_string()));
            }
            q
        };
        let count = rows().count().get_result(conn)?;
        let oldest = rows()
            .select(diesel::dsl::min(login_failures::failed_at))
            .first(conn)?;
        Ok((count, oldest))
    }

    /// Records an attempt as a failure before its password is checked, and returns its
    /// row id: a sign-in that succeeds takes it back (`forget`). Reserving first makes
    /// the limit hold under concurrency: 400 attempts at once cannot all be hashed.
    pub fn reserve(conn: &mut DbConnection, username: &str, ip: &str) -> QueryResult<i64> {
        Self::record(conn, username, ip)?;
        login_failures::table
            .filter(login_failures::username.eq(username))
            .filter(login_failures::client_ip.eq(ip))
            .select(diesel::dsl::max(login_failures::id))
            .first::<Option<i64>>(conn)?
            .ok_or(diesel::result::Error::NotFound)
    }

    pub fn forget(conn: &mut DbConnection, id: i64) -> QueryResult<()> {
        diesel::delete(login_failures::table.find(id))
            .execute(conn)
            .map(|_| ())
    }

    pub fn prune(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(login_failures::table.filter(login_failures::failed_at.lt(before)))
            .execute(conn)
    }
}

/// Keys the server keeps in its own database.
pub struct ServerKey;

impl ServerKey {
    /// Returns the stored value for `name`, storing `make()` first if there is none. Two
    /// instances starting together agree because the insert is conditional.
    pub fn get_or_create(
        conn: &mut DbConnection,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> QueryResult<String> {
        let existing: Option<String> = server_keys::table
            .find(name)
            .select(server_keys::value)
            .first(conn)
            .optional()?;
        if let Some(v) = existing {
            return Ok(v);
        }
        let inserted = diesel::insert_into(server_keys::table)
            .values((
                server_keys::name.eq(name),
                server_keys::value.eq(make()),
                server_keys::created_at.eq(super::now()),
            ))
            .execute(conn);
        match inserted {
            // Another instance stored it first: use theirs.
            Ok(_)
            | Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => {}
            Err(e) => return Err(e),
        }
        server_keys::table
            .find(name)
            .select(server_keys::value)
            .first(conn)
    }
}
