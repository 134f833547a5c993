-- AI: a spend reservation is a row with an expiry, so a call that never settles stops counting against the limit.
--
-- ai_spend_months.reserved_usd was one sum per user and month: each call added its worst case before the provider
-- and took it off when it settled. A call that never settled (its Lambda cut off mid-call, the database connection
-- lost as the answer was recorded) left its worst case reserved until the month ended, and the user was refused
-- (429) that much early. Now each reservation is a row that stops counting at expires_at, which is set past the
-- longest a call can run (twice the provider timeout and a minute); settling deletes it. Maintenance purges rows
-- that expired.
--
-- reserved_usd stays, unused, while code from before this migration may still run during a deploy (that code
-- reserves into it and settles out of it, which the new code ignores); a later migration drops it. Amounts
-- reserved there now are carried over as rows expiring in five minutes, covering calls in flight.

CREATE TABLE ai_spend_reservations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid NOT NULL,
    month      date NOT NULL,
    amount_usd numeric(16, 8) NOT NULL CHECK (amount_usd > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    FOREIGN KEY (user_id, month) REFERENCES ai_spend_months (user_id, month) ON DELETE CASCADE
);

-- The limit check sums a user's live reservations of the month; maintenance walks (expires_at, id).
CREATE INDEX ai_spend_reservations_user_month ON ai_spend_reservations (user_id, month);
CREATE INDEX ai_spend_reservations_expires_at ON ai_spend_reservations (expires_at, id);

INSERT INTO ai_spend_reservations (user_id, month, amount_usd, expires_at)
SELECT user_id, month, reserved_usd, now() + interval '5 minutes' FROM ai_spend_months WHERE reserved_usd > 0;

UPDATE ai_spend_months SET reserved_usd = 0 WHERE reserved_usd > 0;

COMMENT ON COLUMN ai_spend_months.reserved_usd IS
    'Unused since migration 0509: reservations are rows of ai_spend_reservations. To be dropped.';
