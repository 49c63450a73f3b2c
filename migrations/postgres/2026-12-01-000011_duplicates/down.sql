DROP TABLE merges;
DROP TABLE duplicate_pairs;
DROP INDEX members_merged_into;
DROP INDEX members_skeleton_key;
DROP INDEX members_phone_key;
ALTER TABLE members DROP COLUMN merged_into;
ALTER TABLE members DROP COLUMN skeleton_key;
ALTER TABLE members DROP COLUMN phone_key;
