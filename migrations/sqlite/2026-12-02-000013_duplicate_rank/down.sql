DROP INDEX duplicate_pairs_rank;
