UPDATE refresh_tokens SET status = 'revoked' WHERE status = 'retired';
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_status_check;
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_status_check
    CHECK (status IN ('active', 'superseded', 'revoked'));
