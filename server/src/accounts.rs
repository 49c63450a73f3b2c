//! Account administration: create, list, update and deactivate users, set their
//! assignments, reset passwords, list and revoke devices. Every change is audited.

use std::collections::BTreeSet;

use diesel::prelude::*;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    audit::AuditEvent,
    db::{
        DbConnection,
        models::{Device, NewUser, Province, User, UserChangeset},
        now,
        schema::{devices, users},
        write_transaction,
    },
    domain::access::{Actor, Assignments, Role, Target},
    error::{ApiError, FieldError},
};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// 3 to 64 characters: lowercase letters, digits, `.`, `_`, `-`.
    #[schema(min_length = 3, max_length = 64, pattern = "^[a-z0-9._-]{3,64}$")]
    pub username: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    pub role: Role,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    #[schema(schema_with = province_codes)]
    pub provinces: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = cooperative_ids)]
    pub cooperatives: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    /// `false` deactivates the account: its tokens stop working at once.
    #[serde(default)]
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentsRequest {
    #[serde(default)]
    #[schema(schema_with = province_codes)]
    pub provinces: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = cooperative_ids)]
    pub cooperatives: Vec<String>,
}

/// The schema of an assignment's provinces: the codes the server accepts, so that API
/// clients (and the API fuzzer) can tell a valid request from an invalid one.
fn province_codes() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(sync_protocol::documents::PROVINCE_CODES)),
        )
        .description(Some("Province codes (see `GET /api/v1/provinces`)."))
        .build()
}

fn cooperative_ids() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        )
        .description(Some("Cooperative document ids (UUIDs), for enumerators."))
        .build()
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
}

/// A user with assignments, as the API shows it.
#[derive(Debug, Clone)]
pub struct UserView {
    pub user: User,
    pub role: Role,
    pub assignments: Assignments,
    /// Provinces of the assigned cooperatives (`None`: one is not known yet).
    pub cooperative_provinces: Option<BTreeSet<String>>,
}

fn load_view(conn: &mut DbConnection, user: User) -> Result<UserView, ApiError> {
    let role = Role::parse(&user.role).ok_or_else(|| ApiError::internal("unknown role"))?;
    let assignments = Assignments {
        provinces: User::provinces(conn, &user.id)?.into_iter().collect(),
        cooperatives: User::cooperatives(conn, &user.id)?.into_iter().collect(),
    };
    let cooperative_provinces = cooperative_provinces(conn, &assignments.cooperatives)?;
    Ok(UserView {
        user,
        role,
        assignments,
        cooperative_provinces,
    })
}

fn target(view: &UserView) -> Target<'_> {
    Target {
        user_id: &view.user.id,
        role: view.role,
        assignments: &view.assignments,
        cooperative_provinces: view.cooperative_provinces.as_ref(),
    }
}

/// Whether `actor` manages the account `user_id` (the one rule of `Actor::can_manage`).
pub fn manages(conn: &mut DbConnection, actor: &Actor, user_id: &str) -> Result<bool, ApiError> {
    let Some(user) = User::find(conn, user_id)? else {
        return Ok(false);
    };
    let view = load_view(conn, user)?;
    Ok(actor.can_manage(&target(&view)))
}

/// Loads a user the actor may see (themselves or someone they manage); others are
/// reported as not found, so scope does not leak which accounts exist.
fn visible_user(conn: &mut DbConnection, actor: &Actor, id: &str) -> Result<UserView, ApiError> {
    let user = User::find(conn, id)?.ok_or(ApiError::NotFound("user"))?;
    let view = load_view(conn, user)?;
    if view.user.id == actor.user_id || actor.can_manage(&target(&view)) {
        Ok(view)
    } else {
        Err(ApiError::NotFound("user"))
    }
}

fn managed_user(conn: &mut DbConnection, actor: &Actor, id: &str) -> Result<UserView, ApiError> {
    let view = visible_user(conn, actor, id)?;
    if view.user.id == actor.user_id && actor.role != Role::NationalAdmin {
        return Err(ApiError::forbidden(
            "you cannot change your own account this way",
        ));
    }
    Ok(view)
}

pub fn validate_username(username: &str) -> Result<(), FieldError> {
    let ok = (3..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "username",
            "invalid",
            "the username must have 3 to 64 characters: lowercase letters, digits, '.', '_', '-'",
        ))
    }
}

/// Checks assignment values and normalises them into sets.
fn check_assignments(
    conn: &mut DbConnection,
    provinces: &[String],
    cooperatives: &[String],
) -> Result<Assignments, ApiError> {
    let mut fields = Vec::new();
    let provinces: BTreeSet<String> = provinces.iter().map(|p| p.trim().to_string()).collect();
    let known: BTreeSet<String> =
        Province::existing(conn, &provinces.iter().cloned().collect::<Vec<_>>())?
            .into_iter()
            .collect();
    for p in provinces.difference(&known) {
        fields.push(FieldError::new(
            "provinces",
            "unknown_province",
            format!("`{p}` is not a province code"),
        ));
    }
    let mut coops = BTreeSet::new();
    for c in cooperatives {
        match uuid::Uuid::parse_str(c.trim()) {
            Ok(id) => {
                coops.insert(id.to_string());
            }
            Err(_) => fields.push(FieldError::new(
                "cooperatives",
                "invalid_uuid",
                format!("`{c}` is not a cooperative id (UUID)"),
            )),
        }
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    Ok(Assignments {
        provinces,
        cooperatives: coops,
    })
}

fn check_role_assignments(role: Role, a: &Assignments) -> Result<(), ApiError> {
    if role == Role::ProvincialAdmin && a.provinces.is_empty() {
        return Err(ApiError::validation(
            "provinces",
            "required",
            "a provincial admin needs at least one province",
        ));
    }
    if role != Role::Enumerator && !a.cooperatives.is_empty() {
        return Err(ApiError::validation(
            "cooperatives",
            "not_allowed",
            "only enumerators are assigned to cooperatives",
        ));
    }
    Ok(())
}

fn authorize_assign(
    conn: &mut DbConnection,
    actor: &Actor,
    role: Role,
    a: &Assignments,
) -> Result<(), ApiError> {
    let places = cooperative_provinces(conn, &a.cooperatives)?;
    if !actor.can_assign(role, a, places.as_ref()) {
        return Err(ApiError::forbidden(
            "you may only manage enumerators assigned within your own provinces, and \
             cooperatives known to be in them",
        ));
    }
    Ok(())
}

/// Provinces of the given cooperatives per the projection, or `None` if any is not (yet)
/// known to the server.
fn cooperative_provinces(
    conn: &mut DbConnection,
    ids: &BTreeSet<String>,
) -> Result<Option<BTreeSet<String>>, ApiError> {
    use crate::db::schema::cooperatives;
    let ids: Vec<String> = ids.iter().cloned().collect();
    let rows: Vec<(String, Option<String>)> = cooperatives::table
        .filter(cooperatives::id.eq_any(&ids))
        .select((cooperatives::id, cooperatives::province_code))
        .load(conn)?;
    if rows.len() != ids.len() {
        return Ok(None);
    }
    Ok(rows.into_iter().map(|(_, p)| p).collect())
}

pub fn create_user(
    conn: &mut DbConnection,
    actor: &Actor,
    req: &CreateUserRequest,
    password_hash: &str,
    request_id: Option<&str>,
) -> Result<UserView, ApiError> {
    let username = req.username.trim();
    validate_username(username).map_err(|f| ApiError::Validation(vec![f]))?;
    write_transaction(conn, |conn| {
        let assignments = check_assignments(conn, &req.provinces, &req.cooperatives)?;
        check_role_assignments(req.role, &assignments)?;
        authorize_assign(conn, actor, req.role, &assignments)?;
        if User::find_by_username(conn, username)?.is_some() {
            return Err(ApiError::Conflict {
                code: "username_taken",
                message: "that username is already taken".into(),
            });
        }
        let id = uuid::Uuid::new_v4().to_string();
        let at = now();
        diesel::insert_into(users::table)
            .values(NewUser {
                id: &id,
                username,
                full_name: req
                    .full_name
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty()),
                role: req.role.as_str(),
                password_hash,
                active: true,
                created_at: at,
                updated_at: at,
                password_changed_at: at,
            })
            .execute(conn)?;
        let provinces: Vec<String> = assignments.provinces.iter().cloned().collect();
        let coops: Vec<String> = assignments.cooperatives.iter().cloned().collect();
        User::set_assignments(conn, &id, &provinces, &coops)?;
        AuditEvent {
            actor_user_id: Some(&actor.user_id),
            action: "user.create",
            target_type: Some("user"),
            target_id: Some(&id),
            outcome: "success",
            request_id,
            details: Some(serde_json::json!({
                "role": req.role.as_str(),
                "provinces": provinces,
                "cooperatives": coops,
            })),
            ..Default::default()
        }
        .record(conn)?;
        let user = User::find(conn, &id)?.ok_or_else(|| ApiError::internal("user vanished"))?;
        load_view(conn, user)
    })
}

pub fn list_users(
    conn: &mut DbConnection,
    actor: &Actor,
    after: Option<String>,
    limit: usize,
) -> Result<(Vec<UserView>, Option<String>), ApiError> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let batch = User::page(conn, cursor.as_deref(), 200)?;
        let exhausted = batch.len() < 200;
        for user in batch {
            cursor = Some(user.username.clone());
            let view = load_view(conn, user)?;
            if view.user.id == actor.user_id || actor.can_manage(&target(&view)) {
                out.push(view);
                if out.len() == limit {
                    let next = out.last().map(|v| v.user.username.clone());
                    return Ok((out, next));
                }
            }
        }
        if exhausted {
            return Ok((out, None));
        }
    }
}

pub fn get_user(conn: &mut DbConnection, actor: &Actor, id: &str) -> Result<UserView, ApiError> {
    visible_user(conn, actor, id)
}

/// Revokes every device token of a user (deactivation, password reset).
fn revoke_all_devices_tokens(conn: &mut DbConnection, user_id: &str) -> Result<(), ApiError> {
    let ids: Vec<String> = devices::table
        .filter(devices::user_id.eq(user_id))
        .select(devices::id)
        .load(conn)?;
    for id in ids {
        Device::revoke_tokens(conn, &id)?;
    }
    Ok(())
}

pub fn update_user(
    conn: &mut DbConnection,
    actor: &Actor,
    id: &str,
    req: &UpdateUserRequest,
    request_id: Option<&str>,
) -> Result<UserView, ApiError> {
    write_transaction(conn, |conn| {
        let view = managed_user(conn, actor, id)?;
        if view.user.id == actor.user_id && (req.role.is_some() || req.active == Some(false)) {
            return Err(ApiError::forbidden(
                "you cannot change your own role or deactivate yourself",
            ));
        }
        if let Some(role) = req.role {
            check_role_assignments(role, &view.assignments)?;
            if !actor.can_assign(role, &view.assignments, view.cooperative_provinces.as_ref()) {
                return Err(ApiError::forbidden("you may not give this role"));
            }
        }
        let changes = UserChangeset {
            full_name: req
                .full_name
                .as_ref()
                .map(|n| Some(n.trim().to_string()).filter(|s| !s.is_empty())),
            role: req.role.map(|r| r.as_str().to_string()),
            active: req.active,
            updated_at: Some(now()),
            ..Default::default()
        };
        diesel::update(users::table.find(id))
            .set(&changes)
            .execute(conn)?;
        if req.active == Some(false) && view.user.active {
            revoke_all_devices_tokens(conn, id)?;
        }
        AuditEvent {
            actor_user_id: Some(&actor.user_id),
            action: "user.update",
            target_type: Some("user"),
            target_id: Some(id),
            outcome: "success",
            request_id,
            details: Some(serde_json::json!({
                "role": req.role.map(Role::as_str),
                "active": req.active,
                "full_name_changed": req.full_name.is_some(),
            })),
            ..Default::default()
        }
        .record(conn)?;
        let user = User::find(conn, id)?.ok_or(ApiError::NotFound("user"))?;
        load_view(conn, user)
    })
}

pub fn set_assignments(
    conn: &mut DbConnection,
    actor: &Actor,
    id: &str,
    req: &AssignmentsRequest,
    request_id: Option<&str>,
) -> Result<UserView, ApiError> {
    write_transaction(conn, |conn| {
        let view = managed_user(conn, actor, id)?;
        let assignments = check_assignments(conn, &req.provinces, &req.cooperatives)?;
        check_role_assignments(view.role, &assignments)?;
        authorize_assign(conn, actor, view.role, &assignments)?;
        let provinces: Vec<String> = assignments.provinces.iter().cloned().collect();
        let coops: Vec<String> = assignments.cooperatives.iter().cloned().collect();
        User::set_assignments(conn, id, &provinces, &coops)?;
        diesel::update(users::table.find(id))
            .set(users::updated_at.eq(now()))
            .execute(conn)?;
        AuditEvent {
            actor_user_id: Some(&actor.user_id),
            action: "user.assignments",
            target_type: Some("user"),
            target_id: Some(id),
            outcome: "success",
            request_id,
            details: Some(serde_json::json!({"provinces": provinces, "cooperatives": coops})),
            ..Default::default()
        }
        .record(conn)?;
        let user = User::find(conn, id)?.ok_or(ApiError::NotFound("user"))?;
        load_view(conn, user)
    })
}

/// Sets a new password hash and signs the user out everywhere.
pub fn reset_password(
    conn: &mut DbConnection,
    actor: &Actor,
    id: &str,
    password_hash: &str,
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    write_transaction(conn, |conn| {
        managed_user(conn, actor, id)?;
        let at = now();
        diesel::update(users::table.find(id))
            .set((
                users::password_hash.eq(password_hash),
                users::password_changed_at.eq(at),
                users::updated_at.eq(at),
            ))
            .execute(conn)?;
        revoke_all_devices_tokens(conn, id)?;
        AuditEvent {
            actor_user_id: Some(&actor.user_id),
            action: "user.reset_password",
            target_type: Some("user"),
            target_id: Some(id),
            outcome: "success",
            request_id,
            ..Default::default()
        }
        .record(conn)?;
        Ok(())
    })
}

/// Checks, before hashing, that the actor may reset this user's password.
pub fn check_can_reset(conn: &mut DbConnection, actor: &Actor, id: &str) -> Result<(), ApiError> {
    managed_user(conn, actor, id).map(|_| ())
}

/// Devices of the actor and of the users the actor manages.
pub fn list_devices(conn: &mut DbConnection, actor: &Actor) -> Result<Vec<Device>, ApiError> {
    if actor.role == Role::NationalAdmin {
        return Ok(Device::all(conn)?);
    }
    let mut ids = vec![actor.user_id.clone()];
    if actor.role == Role::ProvincialAdmin {
        let (views, _) = list_users(conn, actor, None, usize::MAX)?;
        ids.extend(views.into_iter().map(|v| v.user.id));
    }
    ids.sort();
    ids.dedup();
    Ok(Device::for_users(conn, &ids)?)
}

/// Revokes a lost or stolen device: its tokens stop working at once and it cannot sign
/// in again. Admins may revoke devices of users they manage, anyone their own.
pub fn revoke_device(
    conn: &mut DbConnection,
    actor: &Actor,
    device_id: &str,
    request_id: Option<&str>,
) -> Result<Device, ApiError> {
    write_transaction(conn, |conn| {
        let device = Device::find(conn, device_id)?.ok_or(ApiError::NotFound("device"))?;
        if device.user_id != actor.user_id {
            let owner = User::find(conn, &device.user_id)?.ok_or(ApiError::NotFound("device"))?;
            let owner = load_view(conn, owner)?;
            if !actor.can_manage(&target(&owner)) {
                return Err(ApiError::NotFound("device"));
            }
        }
        if device.revoked_at.is_none() {
            diesel::update(devices::table.find(device_id))
                .set((
                    devices::revoked_at.eq(now()),
                    devices::revoked_by.eq(&actor.user_id),
                ))
                .execute(conn)?;
            Device::revoke_tokens(conn, device_id)?;
        }
        AuditEvent {
            actor_user_id: Some(&actor.user_id),
            action: "device.revoke",
            target_type: Some("device"),
            target_id: Some(device_id),
            outcome: "success",
            request_id,
            ..Default::default()
        }
        .record(conn)?;
        Device::find(conn, device_id)?.ok_or(ApiError::NotFound("device"))
    })
}

/// The id of the active national admin `username` (the command line's imports are made
/// for one): anyone else is an error naming why.
pub fn national_admin_id(conn: &mut DbConnection, username: &str) -> Result<String, ApiError> {
    use crate::db::schema::users;
    let found: Option<(String, String, bool)> = users::table
        .filter(users::username.eq(username))
        .select((users::id, users::role, users::active))
        .first(conn)
        .optional()?;
    match found {
        Some((id, role, true)) if role == Role::NationalAdmin.as_str() => Ok(id),
        Some((_, _, false)) => Err(ApiError::forbidden(format!("{username} is deactivated"))),
        Some(_) => Err(ApiError::forbidden(format!(
            "{username} is not a national admin: only national admins import"
        ))),
        None => Err(ApiError::NotFound("user")),
    }
}
