DROP INDEX duplicate_pairs_rank;
DROP INDEX duplicate_pairs_list;
CREATE INDEX duplicate_pairs_list ON duplicate_pairs (status, province_code, score);
