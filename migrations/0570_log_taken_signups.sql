-- A signup refused because its username or e-mail address is taken (409) is logged as signup_failed, so that
-- such refusals can be counted per client network (shared/services/accounts.py): a 409 tells that an address
-- has an account, and signup had no limit, while login answers alike for every account and is limited. The
-- action list grows by one. NOT VALID as in 0507: every existing row satisfies the new list (the old one is part
-- of it), so the ALTER scans nothing while it holds its lock, and new rows are checked as before.
ALTER TABLE connection_logs DROP CONSTRAINT connection_logs_action_check;
ALTER TABLE connection_logs ADD CONSTRAINT connection_logs_action_check CHECK (action IN (
    'signup', 'signup_failed', 'login', 'login_failed', 'refresh', 'refresh_reuse_detected', 'logout',
    'logout_all', 'password_changed', 'password_change_failed', 'api_key_created', 'api_key_revoked',
    'role_changed', 'deactivated', 'reactivated'
)) NOT VALID;
