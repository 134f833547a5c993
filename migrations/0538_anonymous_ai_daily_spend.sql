-- AI: a ceiling on what all anonymous conversations together may spend in a UTC day
-- (ANONYMOUS_AI_DAILY_SPEND_LIMIT_USD, docs/ai.md "Anonymous conversations").
--
-- The per-address rate bounds what one address can spend, but not what many addresses can: a chat widget open to
-- the internet had no bound on the operator's bill. The day's ledger works as a user's monthly one (0301, 0509):
-- before a provider call the day's row is locked, spent plus live reservations plus the call's worst case is
-- checked against the limit, and the worst case is reserved as a row that counts until the call settles or the
-- reservation expires. A day rather than a month, so that a burst of abuse can exhaust one day's budget at most.

CREATE TABLE ai_anonymous_spend_days (
    day        date PRIMARY KEY,
    spent_usd  numeric(16, 8) NOT NULL DEFAULT 0 CHECK (spent_usd >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ai_anonymous_spend_reservations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    day        date NOT NULL REFERENCES ai_anonymous_spend_days (day) ON DELETE CASCADE,
    amount_usd numeric(16, 8) NOT NULL CHECK (amount_usd > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- The limit check sums the day's live reservations; maintenance walks (expires_at, id).
CREATE INDEX ai_anonymous_spend_reservations_day ON ai_anonymous_spend_reservations (day);
CREATE INDEX ai_anonymous_spend_reservations_expires_at ON ai_anonymous_spend_reservations (expires_at, id);
