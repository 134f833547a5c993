-- Identity: failed logins are counted per client network, as anonymous conversations are.
--
-- The per-address login throttle counted connection_logs.ip_address exactly: an IPv6 client holds a whole /64
-- and may send each attempt from another address in it, so it was never throttled. address_key is the key a
-- client is counted under (shared/auth/addresses.py: its /64 for IPv6, the IPv4 address of an IPv4-mapped one,
-- the address otherwise); ip_address keeps the address itself for the trail. Rows from before have none, and
-- the throttle's window is minutes, so nothing needs back-filling. Its index comes in 0533 (CONCURRENTLY).

ALTER TABLE connection_logs ADD COLUMN address_key text;
