-- 0090: the scores of a resolution, kept exact and recomputed when history arrives late.
-- final_probability (DECIMAL(5,4), the spec's) shows the score rounded; calibration reads
-- final_probability_exact, the pooled probability at final_observed_at, the last observation
-- at or before the close or resolution time (predict_pipeline/calibration/resolutions.py).
-- probability_1d/7d/30d are the same at the last observation a day, a week and 30 days before
-- close. scored_at is when they were computed; stage 2 clears it when it writes signals for a
-- resolved event, and event_resolutions scores every resolution whose scored_at is NULL.
ALTER TABLE prediction_resolutions
  ADD COLUMN final_probability_exact DOUBLE PRECISION
    CHECK (final_probability_exact >= 0 AND final_probability_exact <= 1),
  ADD COLUMN final_observed_at TIMESTAMPTZ,
  ADD COLUMN probability_1d DOUBLE PRECISION,
  ADD COLUMN probability_7d DOUBLE PRECISION,
  ADD COLUMN probability_30d DOUBLE PRECISION,
  ADD COLUMN scored_at TIMESTAMPTZ;

CREATE INDEX idx_resolutions_unscored ON prediction_resolutions (event_id) WHERE scored_at IS NULL;
