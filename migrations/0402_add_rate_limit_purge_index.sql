-- Maintenance walks stale anonymous-creation rate-limit rows by (window_start, address).
CREATE INDEX anonymous_rate_limits_window_address_idx ON anonymous_rate_limits (window_start, address);
