-- confab:no-transaction
-- Deleting a user sets connection_logs.actor_id (0530) to NULL where it names them: this index finds those rows
-- instead of a scan of the whole trail, and lists what an administrator did. Partial: most rows have no actor.
-- CONCURRENTLY: every login writes this table.
CREATE INDEX CONCURRENTLY connection_logs_actor_idx ON connection_logs (actor_id, created_at DESC)
    WHERE actor_id IS NOT NULL;
