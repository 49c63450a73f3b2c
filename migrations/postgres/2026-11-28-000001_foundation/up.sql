-- Foundation: reference data, accounts, devices, refresh tokens, login throttling, audit.
-- Ids are UUID strings made by the server or the tablet; times are UTC without zone.

CREATE TABLE provinces (
    code TEXT PRIMARY KEY NOT NULL,
    iso_code TEXT NOT NULL UNIQUE,
    name_latin TEXT NOT NULL,
    name_khmer TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('capital', 'province'))
);

-- Server-held keys (the access-token signing key when none is configured), so a
-- restart or a second instance on the same database keeps issued tokens valid.
CREATE TABLE server_keys (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL UNIQUE,
    full_name TEXT,
    role TEXT NOT NULL CHECK (role IN ('enumerator', 'provincial_admin', 'national_admin')),
    password_hash TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    password_changed_at TIMESTAMP NOT NULL
);

CREATE TABLE user_provinces (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    province_code TEXT NOT NULL REFERENCES provinces (code),
    PRIMARY KEY (user_id, province_code)
);
CREATE INDEX user_provinces_province ON user_provinces (province_code);

CREATE TABLE user_cooperatives (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cooperative_id TEXT NOT NULL,
    PRIMARY KEY (user_id, cooperative_id)
);
CREATE INDEX user_cooperatives_cooperative ON user_cooperatives (cooperative_id);

CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    revoked_by TEXT,
    token_epoch BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE refresh_tokens (
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
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_id);

CREATE TABLE login_failures (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    username TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    failed_at TIMESTAMP NOT NULL
);
CREATE INDEX login_failures_username ON login_failures (username, failed_at);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    actor_user_id TEXT,
    device_id TEXT,
    action TEXT NOT NULL,
    target_type TEXT,
    target_id TEXT,
    outcome TEXT NOT NULL,
    request_id TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_occurred ON audit_log (occurred_at);
CREATE INDEX audit_log_actor ON audit_log (actor_user_id);

INSERT INTO provinces (code, iso_code, name_latin, name_khmer, kind) VALUES
('01', 'KH-1', 'Banteay Meanchey', 'បន្ទាយមានជ័យ', 'province'),
('02', 'KH-2', 'Battambang', 'បាត់ដំបង', 'province'),
('03', 'KH-3', 'Kampong Cham', 'កំពង់ចាម', 'province'),
('04', 'KH-4', 'Kampong Chhnang', 'កំពង់ឆ្នាំង', 'province'),
('05', 'KH-5', 'Kampong Speu', 'កំពង់ស្ពឺ', 'province'),
('06', 'KH-6', 'Kampong Thom', 'កំពង់ធំ', 'province'),
('07', 'KH-7', 'Kampot', 'កំពត', 'province'),
('08', 'KH-8', 'Kandal', 'កណ្ដាល', 'province'),
('09', 'KH-9', 'Koh Kong', 'កោះកុង', 'province'),
('10', 'KH-10', 'Kratie', 'ក្រចេះ', 'province'),
('11', 'KH-11', 'Mondulkiri', 'មណ្ឌលគិរី', 'province'),
('12', 'KH-12', 'Phnom Penh', 'ភ្នំពេញ', 'capital'),
('13', 'KH-13', 'Preah Vihear', 'ព្រះវិហារ', 'province'),
('14', 'KH-14', 'Prey Veng', 'ព្រៃវែង', 'province'),
('15', 'KH-15', 'Pursat', 'ពោធិ៍សាត់', 'province'),
('16', 'KH-16', 'Ratanakiri', 'រតនគិរី', 'province'),
('17', 'KH-17', 'Siem Reap', 'សៀមរាប', 'province'),
('18', 'KH-18', 'Preah Sihanouk', 'ព្រះសីហនុ', 'province'),
('19', 'KH-19', 'Stung Treng', 'ស្ទឹងត្រែង', 'province'),
('20', 'KH-20', 'Svay Rieng', 'ស្វាយរៀង', 'province'),
('21', 'KH-21', 'Takeo', 'តាកែវ', 'province'),
('22', 'KH-22', 'Oddar Meanchey', 'ឧត្តរមានជ័យ', 'province'),
('23', 'KH-23', 'Kep', 'កែប', 'province'),
('24', 'KH-24', 'Pailin', 'ប៉ៃលិន', 'province'),
('25', 'KH-25', 'Tbong Khmum', 'ត្បូងឃ្មុំ', 'province');
