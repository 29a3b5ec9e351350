-- 0072: re-predictions asked for by rules. The campaign_repredict action (predict_pipeline/
-- rules/execute.py) records a request here, audited; campaign_repredict_sensor launches the
-- campaign_predictions asset for the requested campaigns only, and that run marks the requests
-- handled with its run id (audited too). Pipeline state: no app privilege.
CREATE TABLE predict_meta.campaign_repredict_requests (
  id BIGSERIAL PRIMARY KEY,
  campaign_id UUID NOT NULL REFERENCES prediction_campaigns(id) ON DELETE CASCADE,
  requested_by UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,  -- the rule's owner
  rule_id UUID REFERENCES prediction_rules(id) ON DELETE SET NULL,
  rule_execution_id UUID,
  requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  handled_at TIMESTAMPTZ,
  handled_by_run TEXT
);
CREATE INDEX idx_repredict_open ON predict_meta.campaign_repredict_requests (campaign_id)
  WHERE handled_at IS NULL;
GRANT SELECT, INSERT, UPDATE ON predict_meta.campaign_repredict_requests TO predict_pipeline;
GRANT USAGE ON SEQUENCE predict_meta.campaign_repredict_requests_id_seq TO predict_pipeline;
GRANT SELECT ON predict_meta.campaign_repredict_requests TO predict_maintenance;
