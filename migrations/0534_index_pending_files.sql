-- confab:no-transaction
-- Files: maintenance settles uploads nobody confirmed once their URL has expired (the bytes arrived: the record
-- is marked uploaded; they never did: it is deleted), walking pending files oldest first. Partial: a file is
-- pending only until its upload is confirmed. CONCURRENTLY: every upload writes this table.
CREATE INDEX CONCURRENTLY user_files_pending_idx ON user_files (created_at, id) WHERE status = 'pending';
