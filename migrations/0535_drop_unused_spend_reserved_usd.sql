-- AI: drop ai_spend_months.reserved_usd, unused since migration 0509 (reservations are rows of
-- ai_spend_reservations, which expire).
--
-- It was kept for one release so that code from before 0509, still running during that deploy or redeployed by
-- a rollback, could reserve into it. The release after it (this one) drops it, as docs/deploy.md's rollback rules
-- say: code from this release or the previous one never reads it. Carry-over of amounts it held was done by 0509.

ALTER TABLE ai_spend_months DROP COLUMN reserved_usd;
