-- Sync: documents with their latest snapshot, the change log (source of truth), held
-- and quarantined changes, actor ownership, per-device pull state, and the relational
-- projection with conflicts and validation flags.

CREATE TABLE documents (
    id TEXT PRIMARY KEY NOT NULL,
    doc_type TEXT NOT NULL,
    province_code TEXT,
    cooperative_id TEXT,
    snapshot BLOB NOT NULL,
    heads TEXT NOT NULL,
    change_count BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX documents_province ON documents (province_code);
CREATE INDEX documents_cooperative ON documents (cooperative_id);

-- seq is allocated from sync_counter under its row lock, at the end of each ingest
-- transaction, so sequence order is commit order and a pull never skips a change.
CREATE TABLE changes (
    seq BIGINT PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents (id),
    actor TEXT NOT NULL,
    actor_seq BIGINT NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    device_time BIGINT NOT NULL,
    bytes BLOB NOT NULL
);
CREATE INDEX changes_document ON changes (document_id, seq);

CREATE TABLE sync_counter (
    name TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO sync_counter (name, value) VALUES ('changes', 0);

CREATE TABLE pending_changes (
    hash TEXT PRIMARY KEY NOT NULL,
    document_id TEXT NOT NULL,
    doc_type TEXT NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    missing_deps TEXT NOT NULL,
    bytes BLOB NOT NULL
);
CREATE INDEX pending_changes_document ON pending_changes (document_id);

CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    document_id TEXT,
    doc_type TEXT,
    hash TEXT,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    bytes BLOB
);
CREATE INDEX quarantine_document ON quarantine (document_id);

CREATE TABLE actors (
    actor TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    first_seen TIMESTAMP NOT NULL
);
CREATE INDEX actors_device ON actors (device_id);

CREATE TABLE device_sync_state (
    device_id TEXT PRIMARY KEY NOT NULL,
    scope TEXT NOT NULL,
    backfill TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE cooperatives (
    id TEXT PRIMARY KEY NOT NULL REFERENCES documents (id),
    name_khmer TEXT,
    name_latin TEXT,
    registration_number TEXT,
    province_code TEXT,
    district TEXT,
    commune TEXT,
    village TEXT,
    status TEXT,
    established_date TEXT,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX cooperatives_province ON cooperatives (province_code);

CREATE TABLE members (
    id TEXT PRIMARY KEY NOT NULL REFERENCES documents (id),
    cooperative_id TEXT,
    full_name_khmer TEXT,
    name_latin TEXT,
    sex TEXT,
    year_of_birth BIGINT,
    phone TEXT,
    province_code TEXT,
    village TEXT,
    role TEXT,
    joined_date TEXT,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX members_cooperative ON members (cooperative_id);

CREATE TABLE training_sessions (
    id TEXT PRIMARY KEY NOT NULL REFERENCES documents (id),
    programme TEXT,
    module TEXT,
    cooperative_id TEXT,
    group_name TEXT,
    province_code TEXT,
    location TEXT,
    facilitators TEXT NOT NULL,
    scheduled_date TEXT,
    start_time TEXT,
    end_time TEXT,
    planned_hours DOUBLE,
    status TEXT,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX training_sessions_province ON training_sessions (province_code);
CREATE INDEX training_sessions_cooperative ON training_sessions (cooperative_id);

CREATE TABLE attendance (
    session_id TEXT NOT NULL REFERENCES training_sessions (id),
    participant_id TEXT NOT NULL,
    member_id TEXT,
    name TEXT,
    sex TEXT,
    age BIGINT,
    phone TEXT,
    status TEXT,
    hours DOUBLE,
    recorded_by TEXT,
    recorded_at TIMESTAMP,
    PRIMARY KEY (session_id, participant_id)
);
CREATE INDEX attendance_member ON attendance (member_id);

CREATE TABLE conflicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    document_id TEXT NOT NULL REFERENCES documents (id),
    field TEXT NOT NULL,
    candidates TEXT NOT NULL,
    winner TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'superseded', 'resolved')),
    detected_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX conflicts_document ON conflicts (document_id, status);

CREATE TABLE validation_flags (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    document_id TEXT NOT NULL REFERENCES documents (id),
    code TEXT NOT NULL,
    field TEXT NOT NULL,
    message TEXT NOT NULL,
    detected_at TIMESTAMP NOT NULL
);
CREATE INDEX validation_flags_document ON validation_flags (document_id);
