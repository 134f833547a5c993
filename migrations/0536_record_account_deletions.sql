-- Identity: a deleted account leaves one row here, the trail of its deletion (DELETE /v1/users/me and
-- DELETE /v1/admin/users/{id}, shared/services/account_deletions.py).
--
-- Not a connection_logs action: every row about the account there loses its user_id with the account (SET NULL),
-- so a deletion logged there would name nobody, and a migration numbered here cannot add an action to
-- connection_logs_action_check anyway (0570 re-creates that list by name after this file on a new database, and
-- would drop the action again). This table keeps the id of the account (no foreign key: the row outlives it,
-- and an id names nobody once the account is gone), its role, who asked (the user, or an administrator), the
-- administrator (NULL once that account is deleted too) and when. No name, e-mail or address is kept.
CREATE TABLE account_deletions (
    user_id      uuid PRIMARY KEY,
    role         text NOT NULL,
    requested_by text NOT NULL CHECK (requested_by IN ('user', 'admin')),
    actor_id     uuid REFERENCES users (id) ON DELETE SET NULL,
    deleted_at   timestamptz NOT NULL DEFAULT now(),
    -- A user deleting their own account is no actor; an administrator's actor_id is NULL once that account goes.
    CONSTRAINT account_deletions_user_has_no_actor CHECK (requested_by = 'admin' OR actor_id IS NULL)
);
-- Deleting an administrator sets actor_id to NULL where it names them: found by this index, not a scan. Partial:
-- users deleting their own account name no actor. The table is new and empty, so no CONCURRENTLY.
CREATE INDEX account_deletions_actor_idx ON account_deletions (actor_id) WHERE actor_id IS NOT NULL;
