-- confab:no-transaction
-- participants (user_id) is the leading column of participants_user_kind_idx (migration 0626): every lookup by user
-- (a user's conversations, the foreign key's ON DELETE CASCADE when an account goes) is served by that index, and
-- this one only cost each join and leave a second index entry to write. CONCURRENTLY: joins, leaves and read marks
-- write this table all the time.
DROP INDEX CONCURRENTLY IF EXISTS participants_user_idx;
