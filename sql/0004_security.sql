-- 0004: row-level security (spec), privileges per role (spec + the pipeline/maintenance roles).

-- Events: public events visible to all, org-private events visible to org members
ALTER TABLE prediction_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Public events viewable by everyone"
  ON prediction_events FOR SELECT
  USING (is_public = true);

CREATE POLICY "Org-private events viewable by org members"
  ON prediction_events FOR SELECT
  USING (
    org_id IS NOT NULL AND EXISTS (
      SELECT 1 FROM prediction_org_members
      WHERE org_id = prediction_events.org_id
        AND user_id = auth.uid()
    )
  );

CREATE POLICY "Authenticated users can create events"
  ON prediction_events FOR INSERT
  WITH CHECK (auth.uid() IS NOT NULL);

-- Campaigns: private to user / org
ALTER TABLE prediction_campaigns ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users see own or org campaigns"
  ON prediction_campaigns FOR SELECT
  USING (
    user_id = auth.uid()
    OR (org_id IS NOT NULL AND EXISTS (
      SELECT 1 FROM prediction_org_members
      WHERE org_id = prediction_campaigns.org_id
        AND user_id = auth.uid()
    ))
  );

CREATE POLICY "Users create own campaigns"
  ON prediction_campaigns FOR INSERT
  WITH CHECK (auth.uid() = user_id);

CREATE POLICY "Users update own campaigns"
  ON prediction_campaigns FOR UPDATE
  USING (auth.uid() = user_id);

-- Rules: private to user / shared within org
ALTER TABLE prediction_rules ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Users see own or org rules"
  ON prediction_rules FOR SELECT
  USING (
    user_id = auth.uid()
    OR (org_id IS NOT NULL AND EXISTS (
      SELECT 1 FROM prediction_org_members
      WHERE org_id = prediction_rules.org_id
        AND user_id = auth.uid()
    ))
    OR is_system = true
  );

CREATE POLICY "Users manage own rules"
  ON prediction_rules FOR ALL
  USING (user_id = auth.uid());

-- Action connections: ALWAYS private to user
ALTER TABLE prediction_action_connections ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Connections private to user"
  ON prediction_action_connections FOR ALL
  USING (user_id = auth.uid());

-- API keys: ALWAYS private to user
ALTER TABLE prediction_api_keys ENABLE ROW LEVEL SECURITY;

CREATE POLICY "API keys private to user"
  ON prediction_api_keys FOR ALL
  USING (user_id = auth.uid());

-- Feeds: private to user
ALTER TABLE prediction_data_feeds ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Feeds private to user"
  ON prediction_data_feeds FOR ALL
  USING (user_id = auth.uid());

-- Subscriptions: private to user
ALTER TABLE prediction_subscriptions ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Subscriptions private to user"
  ON prediction_subscriptions FOR SELECT
  USING (user_id = auth.uid());

-- Usage metrics: private to user
ALTER TABLE prediction_usage_metrics ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Usage private to user"
  ON prediction_usage_metrics FOR SELECT
  USING (user_id = auth.uid());

-- Audit log: admin only
ALTER TABLE prediction_audit_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Audit log admin only"
  ON prediction_audit_log FOR SELECT
  USING (
    EXISTS (
      SELECT 1 FROM prediction_org_members
      WHERE user_id = auth.uid() AND role IN ('owner', 'admin')
    )
  );

-- Fix: with only a SELECT policy, RLS refused every INSERT, so the application could not
-- append to its own audit log. The intent is append-only: INSERT allowed, UPDATE/DELETE
-- refused by privileges below (no UPDATE/DELETE policy exists either).
CREATE POLICY "Audit log append"
  ON prediction_audit_log FOR INSERT
  WITH CHECK (true);

-- ---------------------------------------------------------------------------------------
-- Privileges. Spec roles first, then the two roles the spec lacked (see 0001).

GRANT USAGE ON SCHEMA public TO predict_app, predict_readonly, predict_pipeline, predict_maintenance;
GRANT USAGE ON SCHEMA auth TO predict_app, predict_readonly, predict_pipeline, predict_maintenance;
GRANT EXECUTE ON FUNCTION auth.uid() TO predict_app, predict_readonly, predict_pipeline,
  predict_maintenance;

-- Application role (used by services), as the spec grants it.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO predict_app;
GRANT SELECT ON ALL TABLES IN SCHEMA auth TO predict_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO predict_app;
-- Audit log: revoke destructive operations.
REVOKE UPDATE, DELETE, TRUNCATE ON prediction_audit_log FROM predict_app;

-- Read-only role (for analytics / reporting).
GRANT SELECT ON ALL TABLES IN SCHEMA public TO predict_readonly;

-- Pipeline role: reads and writes every table across users (BYPASSRLS), keeps auth users in
-- sync, but the audit log stays append-only for it too.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO predict_pipeline;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA auth TO predict_pipeline;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO predict_pipeline;
REVOKE UPDATE, DELETE, TRUNCATE ON prediction_audit_log FROM predict_pipeline;
GRANT EXECUTE ON FUNCTION predict_ensure_snapshot_partitions(timestamptz, timestamptz)
  TO predict_pipeline, predict_maintenance;

-- Maintenance role (retention): may delete, including archived audit rows.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO predict_maintenance;
GRANT SELECT ON ALL TABLES IN SCHEMA auth TO predict_maintenance;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO predict_maintenance;

-- Tables of later migrations get the same baseline; each migration revokes what it must.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO predict_app, predict_pipeline, predict_maintenance;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO predict_readonly;
