DROP INDEX pending_changes_device;
DROP INDEX quarantine_device;
DROP INDEX quarantine_hash;
ALTER TABLE quarantine DROP COLUMN bytes_sha256;
ALTER TABLE quarantine DROP COLUMN original_size;
