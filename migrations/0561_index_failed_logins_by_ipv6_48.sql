-- confab:no-transaction
-- The per-/48 login throttle (0560) counts a network's recent failed logins. Partial: failures of IPv6 clients
-- only (IPv4 rows have no network_key). CONCURRENTLY: every login writes this table.
CREATE INDEX CONCURRENTLY connection_logs_failed_ipv6_48_idx ON connection_logs (network_key, created_at DESC)
    WHERE action = 'login_failed' AND network_key IS NOT NULL;
