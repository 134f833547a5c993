-- A cached answer keeps why it ended: an answer cut at max_tokens ("length") was answered again from the cache
-- as "stop", so a client that continues a truncated answer (as OpenAI's clients and agents do) took it for whole.
-- Entries stored before this have none and are not answered from (their answer may have been cut); the next
-- call with the same key stores it again. Nullable, with no default: adding the column rewrites nothing.
ALTER TABLE ai_cache ADD COLUMN finish_reason text;
