ALTER TABLE members DROP COLUMN latin_key;
