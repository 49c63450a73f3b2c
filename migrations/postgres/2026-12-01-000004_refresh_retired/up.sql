-- A refresh token retired by a lost-response retry: used again later, it means two
-- holders of the device's tokens (reuse detection; docs/api.md).
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_status_check;
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_status_check
    CHECK (status IN ('active', 'superseded', 'revoked', 'retired'));
