-- The device whose push created a document, for the per-device cap on new documents
-- (docs/sync-protocol.md, too_many_new_documents). NULL for documents created before.
ALTER TABLE documents ADD COLUMN created_by_device TEXT;
CREATE INDEX documents_created_by_device ON documents (created_by_device, created_at);
