DROP INDEX conflicts_status;
ALTER TABLE conflicts DROP COLUMN resolution_change;
ALTER TABLE conflicts DROP COLUMN resolution;
ALTER TABLE conflicts DROP COLUMN resolved_at;
ALTER TABLE conflicts DROP COLUMN resolved_by;
