-- The duplicates queue lists open pairs by score, highest first, across the country
-- (national admins): this index answers the first page without sorting every pair.
CREATE INDEX duplicate_pairs_rank ON duplicate_pairs (status, score DESC, id);
