ALTER TABLE device_sync_state DROP COLUMN departed;
