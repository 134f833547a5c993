-- Files: a deleted file's presigned upload URL stores bytes until it expires, and nothing revokes it. Each delete
-- leaves its storage key here with that expiry: until then it counts as an upload in progress (so deleting does
-- not free a slot early), and after it maintenance deletes whatever bytes arrived, then the row.
-- SET NULL: the bytes of a deleted account's files still have to go.
CREATE TABLE user_file_deletions (
    storage_key    text PRIMARY KEY,
    owner_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    url_expires_at timestamptz NOT NULL
);
CREATE INDEX user_file_deletions_owner_idx ON user_file_deletions (owner_id, url_expires_at);
CREATE INDEX user_file_deletions_expiry_idx ON user_file_deletions (url_expires_at, storage_key);
