-- Identity: failed logins are also counted per IPv6 /48, with a larger budget than per /64.
--
-- address_key (0532) counts an IPv6 client by its /64. A customer routed a /56 or /48 (common for homes and
-- hosting) holds 256 or 65536 /64s and could send each attempt from another one, each with a fresh budget.
-- network_key is the wider network the client is counted under as well (shared/auth/addresses.py
-- rate_limited_network: the /48 of an IPv6 address; NULL for IPv4 and IPv4-mapped IPv6, which keep their
-- per-address count). Rows from before have none, and the throttle's window is minutes, so nothing needs
-- back-filling. Its index comes in 0561 (CONCURRENTLY).

ALTER TABLE connection_logs ADD COLUMN network_key text;
