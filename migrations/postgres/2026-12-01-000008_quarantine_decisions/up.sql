-- An admin's decision on a quarantined change: released (committed under its original
-- device after every check passed again) or dismissed with a reason. The row and its
-- bytes always stay (docs/admin-guide.md, Quarantine).
ALTER TABLE quarantine ADD COLUMN status TEXT NOT NULL DEFAULT 'open'
    CHECK (status IN ('open', 'released', 'dismissed'));
ALTER TABLE quarantine ADD COLUMN decided_by TEXT;
ALTER TABLE quarantine ADD COLUMN decided_at TIMESTAMP;
ALTER TABLE quarantine ADD COLUMN decision_note TEXT;
CREATE INDEX quarantine_status ON quarantine (status, id);
