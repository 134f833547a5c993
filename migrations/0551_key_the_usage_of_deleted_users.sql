-- Usage: a deleted user's daily rollups keep them one person per model, under a key that names nobody.
--
-- Migration 0505 added a deleted user's usage_daily rows to the one NULL-user row of each day, model and provider.
-- Totals stayed exact, but GET /v1/admin/usage/models counts distinct users (count(DISTINCT user_id), which skips
-- NULL): once an account was deleted, every past period it had used a model in counted one user fewer. A per-day
-- count kept beside the totals would not do: a report spans any range of days, and a person with usage on ten of
-- them would count ten times. So a deleted user's rows are kept apart instead, their user_id NULL and
-- deleted_user_key set to a random uuid (gen_random_uuid at the deletion), one per model and provider the user had
-- used, and the report counts distinct coalesce(user_id, deleted_user_key). The key is drawn for that one purpose:
-- it is no function of the account, is kept nowhere else, and, being per model, does not even tie together the
-- deleted person's use of two models (the report never needs that). Rows with neither (usage recorded with no
-- known user: anonymous chats, an event that arrived after its user was deleted, users deleted before this
-- migration, whose rows 0505 merged) stay one row per day, model and provider, counted among no one's users.
--
-- The key of usage_daily takes the column in 0552 (an index built CONCURRENTLY) and 0553 (the swap and the trigger).
-- NOT VALID, as in 0530: the column is new, so every row is NULL there and satisfies the check; validating would only
-- scan the table under the lock ADD COLUMN holds. New and changed rows are checked.
ALTER TABLE usage_daily ADD COLUMN deleted_user_key uuid;
ALTER TABLE usage_daily ADD CONSTRAINT usage_daily_deleted_user_key_check
    CHECK (user_id IS NULL OR deleted_user_key IS NULL) NOT VALID;
