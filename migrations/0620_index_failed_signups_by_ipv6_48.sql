-- confab:no-transaction
-- Signups refused as taken (0570) are also counted per IPv6 /48, as failed logins are (0560): a client rotating
-- the /64s of a routed /48 had a fresh per-address budget in each. Partial: those refusals of IPv6 clients only.
-- CONCURRENTLY: every login writes this table.
CREATE INDEX CONCURRENTLY connection_logs_failed_signup_ipv6_48_idx ON connection_logs (network_key, created_at DESC)
    WHERE action = 'signup_failed' AND network_key IS NOT NULL;
