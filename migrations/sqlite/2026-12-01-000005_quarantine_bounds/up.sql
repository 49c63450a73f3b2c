-- Quarantine is bounded (docs/reliability.md): a row keeps at most a prefix of a refused
-- change's bytes, with the whole size and SHA-256, so an oversized "change" cannot fill
-- the disk; indexes for the per-device caps (quarantine, pending) and for finding
-- quarantined dependencies.
ALTER TABLE quarantine ADD COLUMN original_size BIGINT;
ALTER TABLE quarantine ADD COLUMN bytes_sha256 TEXT;
CREATE INDEX quarantine_hash ON quarantine (hash);
CREATE INDEX quarantine_device ON quarantine (device_id, received_at);
CREATE INDEX pending_changes_device ON pending_changes (device_id);
