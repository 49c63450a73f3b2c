-- The duplicates queue lists open pairs by score, highest first: across the country
-- (national admins) by `duplicate_pairs_rank`, within a province by `duplicate_pairs_list`,
-- both in the list's order so that a page is read without sorting every pair.
CREATE INDEX duplicate_pairs_rank ON duplicate_pairs (status, score DESC, id);
DROP INDEX duplicate_pairs_list;
CREATE INDEX duplicate_pairs_list ON duplicate_pairs (status, province_code, score DESC, id);
