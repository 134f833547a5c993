-- confab:no-transaction
-- Signups refused as taken (0570) are counted per client network. Partial: those refusals only.
-- CONCURRENTLY: every login writes this table.
CREATE INDEX CONCURRENTLY connection_logs_failed_signup_network_idx ON connection_logs (address_key, created_at DESC)
    WHERE action = 'signup_failed';
