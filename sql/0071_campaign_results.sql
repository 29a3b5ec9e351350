-- 0071: campaign results as the campaign loop measures and scores them
-- (predict_pipeline/campaigns, README "Campaigns").
--
-- prediction_campaign_results gains:
--   engagements       the interactions the ad platform counts (likes, comments, shares, saves,
--                     clicks); actual_engagement_rate = engagements / impressions.
--   predicted_*, predicted_metric, benchmark_rate, recommended_variant_id, scored_at: the
--                     prediction in force when the row was recorded, frozen once (a later
--                     prediction has seen the row, so only the one before it is scored).
--   event_shift       the log-odds shift of the campaign's linked events when the loop first
--                     saw the row (the environment it was measured in; pooling removes it).
--   success           the documented outcome: the row's rate on predicted_metric reached
--                     benchmark_rate.
-- prediction_error and prediction_direction_correct (spec columns) are computed from these.
ALTER TABLE prediction_campaign_results
  ADD COLUMN engagements INTEGER,
  ADD COLUMN predicted_success_probability DECIMAL(5,4)
    CHECK (predicted_success_probability >= 0 AND predicted_success_probability <= 1),
  ADD COLUMN predicted_engagement_rate DECIMAL(5,4)
    CHECK (predicted_engagement_rate >= 0 AND predicted_engagement_rate <= 1),
  ADD COLUMN predicted_conversion_rate DECIMAL(5,4)
    CHECK (predicted_conversion_rate >= 0 AND predicted_conversion_rate <= 1),
  ADD COLUMN predicted_metric TEXT
    CHECK (predicted_metric IN ('engagement_rate', 'conversion_rate')),
  ADD COLUMN benchmark_rate DECIMAL(5,4) CHECK (benchmark_rate >= 0 AND benchmark_rate <= 1),
  ADD COLUMN recommended_variant_id UUID
    REFERENCES prediction_campaign_variants(id) ON DELETE SET NULL,
  ADD COLUMN event_shift DECIMAL(6,4),
  ADD COLUMN success BOOLEAN,
  ADD COLUMN scored_at TIMESTAMPTZ;

-- One row per campaign, variant (none: the campaign as a whole) and period: a re-sent row is
-- the same row, never a second one.
CREATE UNIQUE INDEX idx_results_period ON prediction_campaign_results (
  campaign_id, COALESCE(variant_id, '00000000-0000-0000-0000-000000000000'),
  result_period_start, result_period_end
);

-- The app records what was measured; what is derived from it (rates, the frozen prediction,
-- errors, success) is the pipeline's to write, so nobody edits their own scores.
REVOKE INSERT, UPDATE ON prediction_campaign_results FROM predict_app;
GRANT INSERT (id, campaign_id, variant_id, impressions, clicks, conversions, engagements,
              spend_cents, revenue_cents, result_period_start, result_period_end, recorded_at,
              recorded_by)
  ON prediction_campaign_results TO predict_app;
GRANT UPDATE (impressions, clicks, conversions, engagements, spend_cents, revenue_cents,
              result_period_start, result_period_end)
  ON prediction_campaign_results TO predict_app;

-- Every result row delivered to the loop (CLI, upload, ad-platform push), as received, with
-- what became of it: LANDED (a new result), REVISED (the stored result of the same period
-- took the new values), UNCHANGED (it was already stored), REJECTED (reasons), PENDING (a
-- push waiting for the campaign_results asset). row_key is a digest of the submitter and the
-- row's values, so a delivery sent again adds nothing here either.
CREATE TABLE predict_meta.campaign_result_submissions (
  id BIGSERIAL PRIMARY KEY,
  row_key TEXT NOT NULL UNIQUE,
  submitted_by UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
  channel TEXT NOT NULL CHECK (channel IN ('cli', 'upload', 'push')),
  origin JSONB NOT NULL,                 -- {"name": file or source, "line": n, "column": ...}
  received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  campaign_ref TEXT,                     -- a campaign id, or the submitter's campaign name
  variant_ref TEXT,                      -- a variant id, or its label in the campaign
  impressions BIGINT,
  clicks BIGINT,
  conversions BIGINT,
  engagements BIGINT,
  spend_cents BIGINT,
  revenue_cents BIGINT,
  period_start TIMESTAMPTZ,
  period_end TIMESTAMPTZ,                -- exclusive
  parse_faults TEXT[] NOT NULL DEFAULT '{}',
  raw JSONB NOT NULL,
  status TEXT NOT NULL DEFAULT 'PENDING'
    CHECK (status IN ('PENDING', 'LANDED', 'REVISED', 'UNCHANGED', 'REJECTED')),
  reasons TEXT[] NOT NULL DEFAULT '{}',
  result_id UUID REFERENCES prediction_campaign_results(id) ON DELETE SET NULL,
  processed_at TIMESTAMPTZ
);
CREATE INDEX idx_result_submissions_pending ON predict_meta.campaign_result_submissions (id)
  WHERE status = 'PENDING';
GRANT SELECT, INSERT, UPDATE ON predict_meta.campaign_result_submissions TO predict_pipeline;
GRANT USAGE ON SEQUENCE predict_meta.campaign_result_submissions_id_seq TO predict_pipeline;
GRANT SELECT ON predict_meta.campaign_result_submissions TO predict_maintenance;
