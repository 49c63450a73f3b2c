DROP INDEX documents_created_by_device;
ALTER TABLE documents DROP COLUMN created_by_device;
