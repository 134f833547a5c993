-- Every message starts with its "sent" time, however it was stored: a send wrote it, while the messages of a
-- completion (the user's and the answer) and a user's message kept after a provider failure had none.
ALTER TABLE messages ALTER COLUMN status_timestamps SET DEFAULT jsonb_build_object('sent', confab_json_time(now()));
