-- A wrong current password on POST /v1/users/me/password is logged, so that failures can be counted: a stolen
-- access token or API key gave unlimited guesses at the account's password (each one a bcrypt check). The
-- action list grows by one. The new constraint is NOT VALID: every existing row satisfies it (the old list is
-- part of the new one), so no scan of the table is made while the ALTER holds its lock on it, and new rows are
-- checked as before.
ALTER TABLE connection_logs DROP CONSTRAINT connection_logs_action_check;
ALTER TABLE connection_logs ADD CONSTRAINT connection_logs_action_check CHECK (action IN (
    'signup', 'login', 'login_failed', 'refresh', 'refresh_reuse_detected', 'logout', 'logout_all',
    'password_changed', 'password_change_failed', 'api_key_created', 'api_key_revoked', 'role_changed',
    'deactivated', 'reactivated'
)) NOT VALID;
