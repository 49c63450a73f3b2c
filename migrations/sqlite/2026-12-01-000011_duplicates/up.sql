-- Duplicate members (docs/duplicates.md). The members projection keeps each member's
-- blocking keys (the phone in national form, the Khmer consonant skeleton) so detection
-- as records arrive looks up a few rows by index, and the member's `merged_into` mark.
ALTER TABLE members ADD COLUMN phone_key TEXT;
ALTER TABLE members ADD COLUMN skeleton_key TEXT;
ALTER TABLE members ADD COLUMN merged_into TEXT;
CREATE INDEX members_phone_key ON members (phone_key);
CREATE INDEX members_skeleton_key ON members (skeleton_key);
CREATE INDEX members_merged_into ON members (merged_into);

-- Candidate pairs and the admins' decisions on them. Not a projection: a rebuild keeps
-- them, so "not the same person" is remembered. `a_id` < `b_id`; each side's
-- fingerprint is a digest of its compared fields when the pair was last scored or
-- decided (a decided pair is proposed again only when one of them changes).
CREATE TABLE duplicate_pairs (
    id TEXT PRIMARY KEY NOT NULL,
    a_id TEXT NOT NULL,
    b_id TEXT NOT NULL,
    province_code TEXT,
    score BIGINT NOT NULL,
    rules TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'merged', 'not_same')),
    a_fingerprint TEXT NOT NULL,
    b_fingerprint TEXT NOT NULL,
    found_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    decided_by TEXT,
    decided_at TIMESTAMP,
    UNIQUE (a_id, b_id)
);
CREATE INDEX duplicate_pairs_b ON duplicate_pairs (b_id);
CREATE INDEX duplicate_pairs_list ON duplicate_pairs (status, province_code, score);

-- Merges, kept so that one can be undone exactly: the survivor's values before the
-- merge for each field taken from the duplicate (JSON; absent fields as null).
CREATE TABLE merges (
    id TEXT PRIMARY KEY NOT NULL,
    pair_id TEXT,
    survivor_id TEXT NOT NULL,
    merged_id TEXT NOT NULL,
    previous TEXT NOT NULL,
    merged_by TEXT NOT NULL,
    merged_at TIMESTAMP NOT NULL,
    undone_by TEXT,
    undone_at TIMESTAMP
);
CREATE INDEX merges_merged ON merges (merged_id);
CREATE INDEX merges_survivor ON merges (survivor_id);
