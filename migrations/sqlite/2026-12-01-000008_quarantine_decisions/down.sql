DROP INDEX quarantine_status;
ALTER TABLE quarantine DROP COLUMN decision_note;
ALTER TABLE quarantine DROP COLUMN decided_at;
ALTER TABLE quarantine DROP COLUMN decided_by;
ALTER TABLE quarantine DROP COLUMN status;
