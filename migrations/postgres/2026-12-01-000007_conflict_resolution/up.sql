-- An admin's resolution of a conflict: who, when, the value chosen and the server change
-- that wrote it (docs/admin-guide.md, Conflicts). The row stays: nothing is deleted.
ALTER TABLE conflicts ADD COLUMN resolved_by TEXT;
ALTER TABLE conflicts ADD COLUMN resolved_at TIMESTAMP;
ALTER TABLE conflicts ADD COLUMN resolution TEXT;
ALTER TABLE conflicts ADD COLUMN resolution_change TEXT;
CREATE INDEX conflicts_status ON conflicts (status, detected_at);
