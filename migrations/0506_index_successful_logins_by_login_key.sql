-- confab:no-transaction
-- Failed logins are counted per login key (a hash of the typed login) since that key's last successful login,
-- whether or not an account matches: counting an existing account's failures across its username and e-mail
-- made a 429 on one alias after failures on the other reveal that both belong to one account. A successful login
-- now stores its login key too, and this index finds the latest one. CONCURRENTLY: every login writes this table.
CREATE INDEX CONCURRENTLY connection_logs_login_key_success_idx ON connection_logs (login_key, created_at DESC)
    WHERE action = 'login';
