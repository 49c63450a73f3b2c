// @generated automatically by Diesel CLI.

diesel::table! {
    actors (actor) {
        actor -> Text,
        device_id -> Text,
        user_id -> Text,
        first_seen -> Timestamp,
    }
}

diesel::table! {
    attendance (session_id, participant_id) {
        session_id -> Text,
        participant_id -> Text,
        member_id -> Nullable<Text>,
        name -> Nullable<Text>,
        sex -> Nullable<Text>,
        age -> Nullable<Int8>,
        phone -> Nullable<Text>,
        status -> Nullable<Text>,
        hours -> Nullable<Float8>,
        recorded_by -> Nullable<Text>,
        recorded_at -> Nullable<Timestamp>,
    }
}

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
    changes (seq) {
        seq -> Int8,
        hash -> Text,
        document_id -> Text,
        actor -> Text,
        actor_seq -> Int8,
        device_id -> Text,
        user_id -> Text,
        received_at -> Timestamp,
        device_time -> Int8,
        bytes -> Bytea,
    }
}

diesel::table! {
    conflicts (id) {
        id -> Int8,
        document_id -> Text,
        field -> Text,
        candidates -> Text,
        winner -> Text,
        status -> Text,
        detected_at -> Timestamp,
        updated_at -> Timestamp,
        resolved_by -> Nullable<Text>,
        resolved_at -> Nullable<Timestamp>,
        resolution -> Nullable<Text>,
        resolution_change -> Nullable<Text>,
    }
}

diesel::table! {
    cooperatives (id) {
        id -> Text,
        name_khmer -> Nullable<Text>,
        name_latin -> Nullable<Text>,
        registration_number -> Nullable<Text>,
        province_code -> Nullable<Text>,
        district -> Nullable<Text>,
        commune -> Nullable<Text>,
        village -> Nullable<Text>,
        status -> Nullable<Text>,
        established_date -> Nullable<Text>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    device_sync_state (device_id) {
        device_id -> Text,
        scope -> Text,
        backfill -> Text,
        updated_at -> Timestamp,
        departed -> Text,
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
    documents (id) {
        id -> Text,
        doc_type -> Text,
        province_code -> Nullable<Text>,
        cooperative_id -> Nullable<Text>,
        snapshot -> Bytea,
        heads -> Text,
        change_count -> Int8,
        last_seq -> Int8,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        created_by_device -> Nullable<Text>,
    }
}

diesel::table! {
    duplicate_pairs (id) {
        id -> Text,
        a_id -> Text,
        b_id -> Text,
        province_code -> Nullable<Text>,
        score -> Int8,
        rules -> Text,
        status -> Text,
        a_fingerprint -> Text,
        b_fingerprint -> Text,
        found_at -> Timestamp,
        updated_at -> Timestamp,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    import_jobs (id) {
        id -> Text,
        kind -> Text,
        status -> Text,
        file_name -> Nullable<Text>,
        file -> Bytea,
        created_by -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        total -> Int8,
        processed -> Int8,
        report -> Text,
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
    members (id) {
        id -> Text,
        cooperative_id -> Nullable<Text>,
        full_name_khmer -> Nullable<Text>,
        name_latin -> Nullable<Text>,
        sex -> Nullable<Text>,
        year_of_birth -> Nullable<Int8>,
        phone -> Nullable<Text>,
        province_code -> Nullable<Text>,
        village -> Nullable<Text>,
        role -> Nullable<Text>,
        joined_date -> Nullable<Text>,
        updated_at -> Timestamp,
        phone_key -> Nullable<Text>,
        skeleton_key -> Nullable<Text>,
        merged_into -> Nullable<Text>,
        latin_key -> Nullable<Text>,
    }
}

diesel::table! {
    merges (id) {
        id -> Text,
        pair_id -> Nullable<Text>,
        survivor_id -> Text,
        merged_id -> Text,
        previous -> Text,
        merged_by -> Text,
        merged_at -> Timestamp,
        undone_by -> Nullable<Text>,
        undone_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    pending_changes (hash) {
        hash -> Text,
        document_id -> Text,
        doc_type -> Text,
        device_id -> Text,
        user_id -> Text,
        received_at -> Timestamp,
        missing_deps -> Text,
        bytes -> Bytea,
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
    quarantine (id) {
        id -> Int8,
        received_at -> Timestamp,
        device_id -> Text,
        user_id -> Text,
        document_id -> Nullable<Text>,
        doc_type -> Nullable<Text>,
        hash -> Nullable<Text>,
        code -> Text,
        reason -> Text,
        bytes -> Nullable<Bytea>,
        original_size -> Nullable<Int8>,
        bytes_sha256 -> Nullable<Text>,
        status -> Text,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
        decision_note -> Nullable<Text>,
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
    sync_counter (name) {
        name -> Text,
        value -> Int8,
    }
}

diesel::table! {
    training_sessions (id) {
        id -> Text,
        programme -> Nullable<Text>,
        module -> Nullable<Text>,
        cooperative_id -> Nullable<Text>,
        group_name -> Nullable<Text>,
        province_code -> Nullable<Text>,
        location -> Nullable<Text>,
        facilitators -> Text,
        scheduled_date -> Nullable<Text>,
        start_time -> Nullable<Text>,
        end_time -> Nullable<Text>,
        planned_hours -> Nullable<Float8>,
        status -> Nullable<Text>,
        updated_at -> Timestamp,
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

diesel::table! {
    validation_flags (id) {
        id -> Int8,
        document_id -> Text,
        code -> Text,
        field -> Text,
        message -> Text,
        detected_at -> Timestamp,
        status -> Text,
        accepted_by -> Nullable<Text>,
        accepted_at -> Nullable<Timestamp>,
        accepted_value -> Nullable<Text>,
        note -> Nullable<Text>,
        fixed_at -> Nullable<Timestamp>,
        fixed_by_change -> Nullable<Text>,
    }
}

diesel::table! {
    walk_ins (id) {
        id -> Text,
        session_id -> Text,
        participant_id -> Text,
        province_code -> Nullable<Text>,
        cooperative_id -> Nullable<Text>,
        phone_key -> Nullable<Text>,
        skeleton_key -> Nullable<Text>,
        fingerprint -> Text,
        score -> Int8,
        candidates -> Text,
        status -> Text,
        member_id -> Nullable<Text>,
        found_at -> Timestamp,
        updated_at -> Timestamp,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    web_preferences (user_id) {
        user_id -> Text,
        language -> Text,
    }
}

diesel::table! {
    web_sessions (id) {
        id -> Text,
        user_id -> Text,
        device_id -> Text,
        csrf_token -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(attendance -> training_sessions (session_id));
diesel::joinable!(changes -> documents (document_id));
diesel::joinable!(conflicts -> documents (document_id));
diesel::joinable!(cooperatives -> documents (id));
diesel::joinable!(devices -> users (user_id));
diesel::joinable!(members -> documents (id));
diesel::joinable!(refresh_tokens -> devices (device_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(training_sessions -> documents (id));
diesel::joinable!(user_cooperatives -> users (user_id));
diesel::joinable!(user_provinces -> provinces (province_code));
diesel::joinable!(user_provinces -> users (user_id));
diesel::joinable!(validation_flags -> documents (document_id));
diesel::joinable!(web_preferences -> users (user_id));
diesel::joinable!(web_sessions -> devices (device_id));
diesel::joinable!(web_sessions -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    actors,
    attendance,
    audit_log,
    changes,
    conflicts,
    cooperatives,
    device_sync_state,
    devices,
    documents,
    duplicate_pairs,
    import_jobs,
    login_failures,
    members,
    merges,
    pending_changes,
    provinces,
    quarantine,
    refresh_tokens,
    server_keys,
    sync_counter,
    training_sessions,
    user_cooperatives,
    user_provinces,
    users,
    validation_flags,
    walk_ins,
    web_preferences,
    web_sessions,
);
