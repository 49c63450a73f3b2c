-- Registry imports (`coopsync import`, `/api/v1/imports`): the uploaded file, kept so
-- that the dry run an admin reviewed is the file that is applied, with its status,
-- progress and row report. Imported records themselves are ordinary documents.
CREATE TABLE import_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('cooperatives', 'members')),
    status TEXT NOT NULL
        CHECK (status IN ('checking', 'checked', 'applying', 'applied', 'failed', 'interrupted')),
    file_name TEXT,
    file BLOB NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    total BIGINT NOT NULL DEFAULT 0,
    processed BIGINT NOT NULL DEFAULT 0,
    report TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX import_jobs_created ON import_jobs (created_at);
-- Members' rows name their cooperative by registration number; the reports select
-- sessions by date.
CREATE INDEX cooperatives_registration ON cooperatives (registration_number);
CREATE INDEX training_sessions_date ON training_sessions (scheduled_date);
