-- 0073: prediction_campaign_calibration, an extension table beside the spec's
-- prediction_calibration_scores: how well the campaign loop's predictions did, per tenant
-- (a user's own campaigns, or an org's), platform and campaign type ('all': every one), and
-- time window, written by the campaign_calibration asset (predict_pipeline/campaigns/
-- calibration.py documents each score). A row aggregates only campaigns its readers can
-- see: a user reads the rows of their own campaigns and of their orgs' campaigns, the same
-- visibility as prediction_campaigns; only the pipeline writes.
CREATE TABLE prediction_campaign_calibration (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID REFERENCES auth.users(id) ON DELETE CASCADE,     -- a user's campaigns without org
  org_id UUID REFERENCES prediction_orgs(id) ON DELETE CASCADE,  -- or an org's campaigns
  platform TEXT NOT NULL,          -- a prediction_campaigns.platform, 'unknown', or 'all'
  campaign_type TEXT NOT NULL,     -- a prediction_campaigns.campaign_type, 'unknown', or 'all'
  time_window TEXT NOT NULL CHECK (time_window IN ('7D', '30D', '90D', 'ALL_TIME')),
  scored_results INTEGER NOT NULL,   -- result rows with a frozen prediction and an outcome
  successes INTEGER NOT NULL,
  brier_score DECIMAL(6,4),          -- mean (p - success)^2
  log_score DECIMAL(8,4),
  accuracy_at_50 DECIMAL(5,4),
  engagement_scored INTEGER NOT NULL,
  mae_engagement_rate DECIMAL(8,6),  -- mean |predicted - actual| engagement rate
  conversion_scored INTEGER NOT NULL,
  mae_conversion_rate DECIMAL(8,6),  -- mean |predicted - actual| conversion rate
  direction_scored INTEGER NOT NULL,
  direction_accuracy DECIMAL(5,4),   -- share of prediction_direction_correct
  calibration_curve JSONB,           -- ten bins, as prediction_calibration_scores'
  computed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK ((user_id IS NULL) <> (org_id IS NULL))
);
CREATE UNIQUE INDEX idx_campaign_calibration_unique ON prediction_campaign_calibration (
  COALESCE(user_id, '00000000-0000-0000-0000-000000000000'),
  COALESCE(org_id, '00000000-0000-0000-0000-000000000000'),
  platform, campaign_type, time_window
);

ALTER TABLE prediction_campaign_calibration ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Campaign calibration follows its campaigns" ON prediction_campaign_calibration
  FOR SELECT
  USING (user_id = auth.uid() OR org_id IN (SELECT predict_my_org_ids()));
GRANT SELECT ON prediction_campaign_calibration TO predict_app;
