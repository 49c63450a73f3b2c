CREATE TABLE refresh_tokens_new (
    id TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    token_hash TEXT NOT NULL UNIQUE,
    parent_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    superseded_at TIMESTAMP,
    retry_used BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO refresh_tokens_new SELECT id, device_id, user_id, token_hash, parent_id, CASE status WHEN 'retired' THEN 'revoked' ELSE status END,
    created_at, expires_at, superseded_at, retry_used FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_new RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_id);
