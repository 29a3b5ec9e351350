-- 0070: a campaign can be PAUSED. The spec's status CHECK lists DRAFT, PREDICTED, LAUNCHED,
-- COMPLETED and ARCHIVED only, so the rule action campaign_pause had to send a campaign back
-- to DRAFT, which says "never predicted" and loses that it was stopped on purpose. PAUSED is
-- "stopped on purpose, resumable"; the prediction stays, and the reason stays in `factors`
-- (`paused_by_rule`: the rule, the time and the rendered reason). An extension of the spec,
-- listed in the README ("Campaigns").
ALTER TABLE prediction_campaigns DROP CONSTRAINT prediction_campaigns_status_check;
ALTER TABLE prediction_campaigns ADD CONSTRAINT prediction_campaigns_status_check
  CHECK (status IN ('DRAFT', 'PREDICTED', 'LAUNCHED', 'PAUSED', 'COMPLETED', 'ARCHIVED'));
