DROP TABLE walk_ins;
