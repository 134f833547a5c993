-- Each refresh token carries the users.token_version it was issued under, and a refresh refuses a token whose
-- version is no longer the user's. Revoking rows alone cannot end every session: a refresh that has locked
-- its token and inserted the child when a password change, logout-everywhere or deactivation runs makes that
-- revocation's UPDATE wait on the lock, and once the refresh commits the UPDATE re-checks only the rows it had
-- already found, never the child inserted meanwhile. Every one of those bumps the token version in the same
-- transaction, so a token that missed the revocation still carries the old version and is refused.
-- A role change bumps the version too but ends no session: it moves the user's live tokens to the new version.
-- Existing rows take their user's current version, so deploying this signs nobody out.
ALTER TABLE refresh_tokens ADD COLUMN token_version integer;
UPDATE refresh_tokens r SET token_version = u.token_version FROM users u WHERE u.id = r.user_id;
ALTER TABLE refresh_tokens ALTER COLUMN token_version SET NOT NULL;
