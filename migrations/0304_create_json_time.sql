-- Timestamps in JSON that PostgreSQL renders (a message in sends and pages, a conversation's last-message
-- preview, a message's status times) written as the rest of the API writes them: RFC 3339 in UTC with "Z",
-- microseconds only when there are some (what pydantic writes). PostgreSQL's own JSON writes the session's
-- offset ("+00:00") and trims trailing zeros, so one message read differently from a send and from an edit.
-- A plain SQL expression: the planner inlines it.
CREATE FUNCTION confab_json_time(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN to_char(
    ts AT TIME ZONE 'UTC',
    CASE WHEN extract(microseconds FROM ts)::bigint % 1000000 = 0 THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
         ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END
);
