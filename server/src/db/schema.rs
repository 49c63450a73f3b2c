// @generated automatically by Diesel CLI.

diesel::table! {
    audit_log (id) {
        id -> Int8,
        occurred_at -> Timestamp,
        actor_user_id -> Nullable<Text>,
        device_id -> Nullable<Text>,
        action -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        outcome -> Text,
        request_id -> Nullable<Text>,
        details -> Text,
    }
}

diesel::table! {
    devices (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        revoked_by -> Nullable<Text>,
        token_epoch -> Int8,
    }
}

diesel::table! {
    login_failures (id) {
        id -> Int8,
        username -> Text,
        client_ip -> Text,
        failed_at -> Timestamp,
    }
}

diesel::table! {
    provinces (code) {
        code -> Text,
        iso_code -> Text,
        name_latin -> Text,
        name_khmer -> Text,
        kind -> Text,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        device_id -> Text,
        user_id -> Text,
        token_hash -> Text,
        parent_id -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        superseded_at -> Nullable<Timestamp>,
        retry_used -> Bool,
    }
}

diesel::table! {
    server_keys (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    user_cooperatives (user_id, cooperative_id) {
        user_id -> Text,
        cooperative_id -> Text,
    }
}

diesel::table! {
    user_provinces (user_id, province_code) {
        user_id -> Text,
        province_code -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        full_name -> Nullable<Text>,
        role -> Text,
        password_hash -> Text,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        password_changed_at -> Timestamp,
    }
}

diesel::joinable!(devices -> users (user_id));
diesel::joinable!(refresh_tokens -> devices (device_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(user_cooperatives -> users (user_id));
diesel::joinable!(user_provinces -> provinces (province_code));
diesel::joinable!(user_provinces -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_log,
    devices,
    login_failures,
    provinces,
    refresh_tokens,
    server_keys,
    user_cooperatives,
    user_provinces,
    users,
);
