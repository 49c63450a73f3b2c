-- The romanised name's key on the members row (docs/duplicates.md "How candidates are
-- found"), so a member's cooperative block is only the members of the cooperative that
-- share a name key or the phone with it: the others cannot reach the proposal
-- threshold, and at national scale reading every member of the cooperative (and each
-- one's province from `documents`, whose rows carry the snapshot) for every new member
-- halved the seed's push throughput. Computed in Rust: members projected before this
-- release get it from the next `coopsync duplicates rescan` (docs/operations.md).
ALTER TABLE members ADD COLUMN latin_key TEXT;

