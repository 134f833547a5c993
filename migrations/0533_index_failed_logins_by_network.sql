-- confab:no-transaction
-- The per-network login throttle (0532) counts a network's recent failed logins. Partial: failures only.
-- CONCURRENTLY: every login writes this table.
CREATE INDEX CONCURRENTLY connection_logs_failed_network_idx ON connection_logs (address_key, created_at DESC)
    WHERE action = 'login_failed';
