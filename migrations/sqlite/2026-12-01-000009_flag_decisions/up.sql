-- Validation flags keep their identity (document, code, field) across projections: an
-- admin can accept a flagged value (it stays accepted until the value changes), and a
-- flag that a later change fixes is closed, naming the change, instead of deleted.
ALTER TABLE validation_flags ADD COLUMN status TEXT NOT NULL DEFAULT 'open'
    CHECK (status IN ('open', 'accepted', 'fixed'));
ALTER TABLE validation_flags ADD COLUMN accepted_by TEXT;
ALTER TABLE validation_flags ADD COLUMN accepted_at TIMESTAMP;
ALTER TABLE validation_flags ADD COLUMN accepted_value TEXT;
ALTER TABLE validation_flags ADD COLUMN note TEXT;
ALTER TABLE validation_flags ADD COLUMN fixed_at TIMESTAMP;
ALTER TABLE validation_flags ADD COLUMN fixed_by_change TEXT;
CREATE INDEX validation_flags_key ON validation_flags (document_id, code, field);
CREATE INDEX validation_flags_status ON validation_flags (status, id);
