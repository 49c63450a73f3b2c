-- Walk-ins (docs/duplicates.md, "Walk-ins"): attendance entries of people with no member
-- record, found as sessions are projected, each with the members it may be (scored by the
-- duplicate rules), and the admin's decision on it: linked to an existing member, or
-- promoted to a new member record. Not a projection: a rebuild keeps the decisions.
-- `phone_key`, `skeleton_key` and `cooperative_id` are the blocking keys a new member is
-- looked up by, so a walk-in learns of a member registered after it.
CREATE TABLE walk_ins (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    province_code TEXT,
    cooperative_id TEXT,
    phone_key TEXT,
    skeleton_key TEXT,
    fingerprint TEXT NOT NULL,
    score BIGINT NOT NULL,
    candidates TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'linked', 'promoted')),
    member_id TEXT,
    found_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    decided_by TEXT,
    decided_at TIMESTAMP,
    UNIQUE (session_id, participant_id)
);
CREATE INDEX walk_ins_list ON walk_ins (status, province_code, score DESC, id);
CREATE INDEX walk_ins_rank ON walk_ins (status, score DESC, id);
CREATE INDEX walk_ins_phone_key ON walk_ins (phone_key);
CREATE INDEX walk_ins_skeleton_key ON walk_ins (skeleton_key);
CREATE INDEX walk_ins_cooperative ON walk_ins (cooperative_id);
