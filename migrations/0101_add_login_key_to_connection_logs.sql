-- Failed logins are counted per attempted login as well as per account and per address, so an unknown
-- login is throttled exactly like a real one (the 429 must not reveal whether an account exists).
-- Only a SHA-256 of the lower-cased login is kept, never the text someone typed.
ALTER TABLE connection_logs ADD COLUMN login_key text;
CREATE INDEX connection_logs_login_key_idx ON connection_logs (login_key, created_at DESC)
    WHERE action = 'login_failed';
