-- Identity: an administrator's change to an account names the administrator and what changed.
--
-- role_changed, deactivated and reactivated were logged under the account changed only: the trail could not
-- say which administrator did it, nor from and to which role. actor_id is the user who acted (NULL for the
-- user's own actions, and once the actor's account is deleted: the trail outlives it); detail holds what
-- changed ({"from": ..., "to": ...} for a role).
--
-- The foreign key is NOT VALID: the column is new, so every existing row is NULL and there is nothing to check,
-- and validating would scan this large, busy table under the lock ADD COLUMN holds. New rows are checked.
-- The index that keeps a user's deletion from scanning the table for SET NULL comes in 0531 (CONCURRENTLY).

ALTER TABLE connection_logs ADD COLUMN actor_id uuid, ADD COLUMN detail jsonb;
ALTER TABLE connection_logs ADD CONSTRAINT connection_logs_actor_id_fkey
    FOREIGN KEY (actor_id) REFERENCES users (id) ON DELETE SET NULL NOT VALID;
