-- The admin web app's sign-ins (server/src/web/session.rs). The cookie holds a random
-- token; only its SHA-256 is kept here. A session names the browser's device row, so
-- revoking that device (or deactivating the user) ends it like any tablet's tokens.
CREATE TABLE web_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
-- The web app's language, remembered per user (`en` or `km`).
CREATE TABLE web_preferences (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    language TEXT NOT NULL CHECK (language IN ('en', 'km'))
);
