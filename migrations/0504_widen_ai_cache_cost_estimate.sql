-- A cache entry's cost is what a later hit reports as cost avoided. Costs are exact to 8 decimals
-- (model_usage.cost and cost_avoided are numeric(14, 8)), so the entry keeps the same scale: at
-- numeric(10, 6) a hit reported the first call's cost rounded to 6 decimals.
ALTER TABLE ai_cache ALTER COLUMN cost_estimate TYPE numeric(14, 8);
