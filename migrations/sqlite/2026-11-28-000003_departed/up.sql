-- Documents moved out of a device's scope by an edit (not by a change of the device's
-- assignments): the next pull names them in `removed` (docs/sync-protocol.md, Scope).
ALTER TABLE device_sync_state ADD COLUMN departed TEXT NOT NULL DEFAULT '[]';
