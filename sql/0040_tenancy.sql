-- 0040: every table closed to other tenants for predict_app (the role user-facing services
-- use, with app.user_id set), as decided table by table below and in the README ("Tenancy in
-- the database"). The pipeline (predict_pipeline, BYPASSRLS) and retention
-- (predict_maintenance, BYPASSRLS) are not subject to RLS; triggers below bind them where
-- they must be (audit log, org ownership).
--
-- Visibility of an event (the spec's RLS on prediction_events, plus its creator): public
-- events to everyone; an org's events to the org's members; an event to the user who created
-- it. Rows that describe an event (signals, snapshots, explanations, trust, resolutions,
-- disputes) follow it: a policy reads `EXISTS (SELECT 1 FROM prediction_events ...)`, which
-- runs under the reader's own RLS on events.

-- ---------------------------------------------------------------------------------------
-- Membership, read without RLS (SECURITY DEFINER) so that policies on prediction_org_members
-- and on the tables that consult it never recurse. Every policy asks these.

-- The orgs the current user belongs to.
CREATE FUNCTION predict_my_org_ids() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT m.org_id FROM prediction_org_members m WHERE m.user_id = auth.uid() $$;

-- The orgs the current user administers (owner or admin).
CREATE FUNCTION predict_my_admin_org_ids() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT m.org_id FROM prediction_org_members m
  WHERE m.user_id = auth.uid() AND m.role IN ('owner', 'admin')
$$;

-- The current user's role in an org (NULL: not a member).
CREATE FUNCTION predict_org_role(org uuid) RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT m.role FROM prediction_org_members m WHERE m.org_id = org AND m.user_id = auth.uid()
$$;

REVOKE ALL ON FUNCTION predict_my_org_ids(), predict_my_admin_org_ids(), predict_org_role(uuid)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION predict_my_org_ids(), predict_my_admin_org_ids(), predict_org_role(uuid)
  TO predict_app, predict_readonly, predict_pipeline, predict_maintenance;

-- ---------------------------------------------------------------------------------------
-- prediction_orgs: a user sees the orgs they belong to (or own); creates orgs they own; an
-- owner or admin edits name, slug and settings; only the owner deletes. owner_id is not
-- writable by predict_app after creation (column privileges), so it cannot be taken.

ALTER TABLE prediction_orgs ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Orgs visible to their members" ON prediction_orgs FOR SELECT
  USING (owner_id = auth.uid() OR id IN (SELECT predict_my_org_ids()));
CREATE POLICY "Orgs created by their owner" ON prediction_orgs FOR INSERT
  WITH CHECK (owner_id = auth.uid());
CREATE POLICY "Orgs edited by their owner or admins" ON prediction_orgs FOR UPDATE
  USING (id IN (SELECT predict_my_admin_org_ids()))
  WITH CHECK (id IN (SELECT predict_my_admin_org_ids()));
CREATE POLICY "Orgs deleted by their owner" ON prediction_orgs FOR DELETE
  USING (owner_id = auth.uid());

REVOKE UPDATE ON prediction_orgs FROM predict_app;
GRANT UPDATE (name, slug, settings, updated_at) ON prediction_orgs TO predict_app;

-- A new org's owner is its first member, as owner; the membership is written here, for every
-- role, so an org never lacks its owner. Re-inserting that membership later is a no-op (see
-- predict_guard_org_member), so callers that add the owner themselves keep working.
CREATE FUNCTION predict_org_owner_membership() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  INSERT INTO prediction_org_members (org_id, user_id, role, invited_by, accepted_at)
  VALUES (NEW.id, NEW.owner_id, 'owner', NEW.owner_id, now());
  RETURN NULL;
END
$$;
CREATE TRIGGER org_owner_membership AFTER INSERT ON prediction_orgs
  FOR EACH ROW EXECUTE FUNCTION predict_org_owner_membership();

-- An ownership transfer (by an operator: predict_app cannot write owner_id) moves the role:
-- the new owner's membership becomes 'owner', the previous owner's 'admin'.
CREATE FUNCTION predict_org_owner_transfer() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  UPDATE prediction_org_members SET role = 'admin'
  WHERE org_id = NEW.id AND user_id = OLD.owner_id;
  INSERT INTO prediction_org_members (org_id, user_id, role, accepted_at)
  VALUES (NEW.id, NEW.owner_id, 'owner', now())
  ON CONFLICT (org_id, user_id) DO UPDATE SET role = 'owner';
  RETURN NULL;
END
$$;
CREATE TRIGGER org_owner_transfer AFTER UPDATE OF owner_id ON prediction_orgs
  FOR EACH ROW WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id)
  EXECUTE FUNCTION predict_org_owner_transfer();

-- ---------------------------------------------------------------------------------------
-- prediction_org_members: members see their orgs' members (and a user their own rows). The
-- owner adds admins, members and viewers; an admin adds members and viewers; invited_by is the
-- one adding. The owner changes roles; a member only accepts their own invitation. The owner
-- removes anyone but themself, an admin removes members and viewers, anyone leaves (except the
-- owner). The role 'owner' belongs to the org's owner_id alone, for every database role.

ALTER TABLE prediction_org_members ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Members visible within their org" ON prediction_org_members FOR SELECT
  USING (user_id = auth.uid() OR org_id IN (SELECT predict_my_org_ids()));
CREATE POLICY "Members added by the org's owner or admins" ON prediction_org_members FOR INSERT
  WITH CHECK (
    invited_by = auth.uid()
    AND (
      (predict_org_role(org_id) = 'owner' AND role IN ('admin', 'member', 'viewer'))
      OR (predict_org_role(org_id) = 'admin' AND role IN ('member', 'viewer'))
    )
  );
CREATE POLICY "Members changed by the owner, accepted by themselves" ON prediction_org_members
  FOR UPDATE
  USING (predict_org_role(org_id) = 'owner' OR user_id = auth.uid())
  WITH CHECK (predict_org_role(org_id) = 'owner' OR user_id = auth.uid());
CREATE POLICY "Members removed by the owner or admins, or leaving" ON prediction_org_members
  FOR DELETE
  USING (
    role <> 'owner' AND (
      predict_org_role(org_id) = 'owner'
      OR (predict_org_role(org_id) = 'admin' AND role IN ('member', 'viewer'))
      OR user_id = auth.uid()
    )
  );

REVOKE UPDATE ON prediction_org_members FROM predict_app;
GRANT UPDATE (role, accepted_at) ON prediction_org_members TO predict_app;

-- What a policy cannot see (the row before an update), for every role: the org's owner_id,
-- and nobody else, holds the role 'owner'; through predict_app only the owner changes a role.
-- Not SECURITY DEFINER, so current_user is the role acting, and its reads are under the
-- acting role's RLS: an org predict_app cannot see has no owner here, so 'owner' is refused.
CREATE FUNCTION predict_guard_org_member() RETURNS trigger
  LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
  org_owner uuid := (SELECT o.owner_id FROM prediction_orgs o WHERE o.id = NEW.org_id);
BEGIN
  IF TG_OP = 'INSERT' AND NEW.user_id = org_owner AND EXISTS (
       SELECT 1 FROM prediction_org_members m
       WHERE m.org_id = NEW.org_id AND m.user_id = NEW.user_id AND m.role = 'owner') THEN
    RETURN NULL;  -- the owner's membership exists since the org was created
  END IF;
  IF NEW.role = 'owner' AND NEW.user_id IS DISTINCT FROM org_owner THEN
    RAISE EXCEPTION 'the role owner belongs to the org''s owner (prediction_orgs.owner_id) alone'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.role <> 'owner' AND NEW.user_id = org_owner THEN
    RAISE EXCEPTION 'the org''s owner keeps the role owner (transfer prediction_orgs.owner_id)'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_OP = 'UPDATE' AND (NEW.org_id, NEW.user_id) IS DISTINCT FROM (OLD.org_id, OLD.user_id)
  THEN
    RAISE EXCEPTION 'a membership keeps its org and user; remove it and add another'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_OP = 'UPDATE' AND current_user = 'predict_app' AND NEW.role IS DISTINCT FROM OLD.role
     AND predict_org_role(OLD.org_id) IS DISTINCT FROM 'owner' THEN
    RAISE EXCEPTION 'only the org''s owner changes a member''s role'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER guard_org_member BEFORE INSERT OR UPDATE ON prediction_org_members
  FOR EACH ROW EXECUTE FUNCTION predict_guard_org_member();

-- Membership changes are audited (actor: the user acting, or the service), with the org in
-- the details so the org's admins still read the entry after the membership is gone.
CREATE FUNCTION predict_audit_org_member() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  before jsonb;
  after jsonb;
  member record;
BEGIN
  IF TG_OP = 'DELETE' THEN member := OLD; ELSE member := NEW; END IF;
  IF TG_OP <> 'INSERT' THEN
    before := jsonb_build_object('role', OLD.role, 'accepted_at', OLD.accepted_at);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    after := jsonb_build_object('role', NEW.role, 'accepted_at', NEW.accepted_at);
  END IF;
  INSERT INTO prediction_audit_log
    (actor_id, actor_type, action, resource_type, resource_id, details, previous_state,
     new_state, service)
  VALUES (
    auth.uid(), CASE WHEN auth.uid() IS NULL THEN 'service' ELSE 'user' END,
    CASE TG_OP WHEN 'INSERT' THEN 'org.member_added' WHEN 'UPDATE' THEN 'org.member_changed'
               ELSE 'org.member_removed' END,
    'prediction_org_members', member.id,
    jsonb_build_object('org_id', member.org_id, 'user_id', member.user_id),
    before, after, 'database');
  RETURN NULL;
END
$$;
CREATE TRIGGER audit_org_member AFTER INSERT OR UPDATE OR DELETE ON prediction_org_members
  FOR EACH ROW EXECUTE FUNCTION predict_audit_org_member();

-- ---------------------------------------------------------------------------------------
-- Org-scoped rows (events, rules, campaigns): through predict_app they are written only by
-- their owner and only into orgs the owner belongs to; for every role, a row's org is one its
-- owner belongs to (the pipeline cannot put a user's rule into a stranger's org either).

CREATE FUNCTION predict_guard_org_scope() RETURNS trigger
  LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
  row_owner uuid := (to_jsonb(NEW)->>TG_ARGV[0])::uuid;  -- created_by or user_id
BEGIN
  -- Read under the acting role's RLS: predict_app sees its own memberships, which is enough,
  -- since its rows are its own (the tables' policies).
  IF NEW.org_id IS NOT NULL AND row_owner IS NOT NULL AND NOT EXISTS (
       SELECT 1 FROM prediction_org_members m
       WHERE m.org_id = NEW.org_id AND m.user_id = row_owner) THEN
    RAISE EXCEPTION '%: its owner % is not a member of org %', TG_TABLE_NAME, row_owner,
      NEW.org_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER guard_org_scope BEFORE INSERT OR UPDATE OF org_id, created_by ON prediction_events
  FOR EACH ROW EXECUTE FUNCTION predict_guard_org_scope('created_by');
CREATE TRIGGER guard_org_scope BEFORE INSERT OR UPDATE OF org_id, user_id ON prediction_rules
  FOR EACH ROW EXECUTE FUNCTION predict_guard_org_scope('user_id');
CREATE TRIGGER guard_org_scope BEFORE INSERT OR UPDATE OF org_id, user_id ON prediction_campaigns
  FOR EACH ROW EXECUTE FUNCTION predict_guard_org_scope('user_id');

-- Events (spec policies, with membership read through predict_my_org_ids and the creator
-- added): created as oneself, public or in one's own orgs. No UPDATE/DELETE policy: the
-- pipeline keeps events' state.
DROP POLICY "Org-private events viewable by org members" ON prediction_events;
CREATE POLICY "Org-private events viewable by org members" ON prediction_events FOR SELECT
  USING (org_id IS NOT NULL AND org_id IN (SELECT predict_my_org_ids()));
CREATE POLICY "Events viewable by their creator" ON prediction_events FOR SELECT
  USING (created_by = auth.uid());
CREATE POLICY "Events created as oneself, in one's own orgs" ON prediction_events
  AS RESTRICTIVE FOR INSERT
  WITH CHECK (created_by = auth.uid()
              AND (org_id IS NULL OR org_id IN (SELECT predict_my_org_ids())));

-- Campaigns: the spec's policies, plus: a campaign's org is one of its owner's orgs.
DROP POLICY "Users see own or org campaigns" ON prediction_campaigns;
CREATE POLICY "Users see own or org campaigns" ON prediction_campaigns FOR SELECT
  USING (user_id = auth.uid()
         OR (org_id IS NOT NULL AND org_id IN (SELECT predict_my_org_ids())));
CREATE POLICY "Campaigns stay in their owner's orgs" ON prediction_campaigns
  AS RESTRICTIVE FOR ALL
  USING (true)
  WITH CHECK (org_id IS NULL OR org_id IN (SELECT predict_my_org_ids()));

-- Rules: the spec's policies, plus: a rule's org is one of its owner's orgs, and system rules
-- (visible to everyone) are not made by users.
DROP POLICY "Users see own or org rules" ON prediction_rules;
CREATE POLICY "Users see own or org rules" ON prediction_rules FOR SELECT
  USING (user_id = auth.uid()
         OR (org_id IS NOT NULL AND org_id IN (SELECT predict_my_org_ids()))
         OR is_system = true);
CREATE POLICY "Rules stay in their owner's orgs" ON prediction_rules
  AS RESTRICTIVE FOR ALL
  USING (true)
  WITH CHECK ((org_id IS NULL OR org_id IN (SELECT predict_my_org_ids()))
              AND is_system IS NOT TRUE);

-- ---------------------------------------------------------------------------------------
-- The sixteen tables without RLS, decided one by one.

-- prediction_signals: read with their event (raw data of a private event is the event's);
-- written by the pipeline only (validated_signals).
ALTER TABLE prediction_signals ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Signals follow their event" ON prediction_signals FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e WHERE e.id = prediction_signals.event_id));
REVOKE INSERT, UPDATE, DELETE ON prediction_signals FROM predict_app;

-- prediction_snapshots: read with their event; written by the pipeline only (event_snapshots,
-- retention's downsampling).
ALTER TABLE prediction_snapshots ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Snapshots follow their event" ON prediction_snapshots FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e WHERE e.id = prediction_snapshots.event_id));
REVOKE INSERT, UPDATE, DELETE ON prediction_snapshots FROM predict_app;

-- prediction_explanations: read with their event; written by the pipeline only (feedback
-- counters would need a per-user votes table the spec does not have).
ALTER TABLE prediction_explanations ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Explanations follow their event" ON prediction_explanations FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e
                 WHERE e.id = prediction_explanations.event_id));
REVOKE INSERT, UPDATE, DELETE ON prediction_explanations FROM predict_app;

-- prediction_trust_scores: read with their event; written by the pipeline only (trust_scores).
ALTER TABLE prediction_trust_scores ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Trust scores follow their event" ON prediction_trust_scores FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e
                 WHERE e.id = prediction_trust_scores.event_id));
REVOKE INSERT, UPDATE, DELETE ON prediction_trust_scores FROM predict_app;

-- prediction_trust_flags: read with their event; raised by the pipeline, reviewed through
-- `flags review` (the pipeline role), so no write for predict_app.
ALTER TABLE prediction_trust_flags ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Trust flags follow their event" ON prediction_trust_flags FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e
                 WHERE e.id = prediction_trust_flags.event_id));
REVOKE INSERT, UPDATE, DELETE ON prediction_trust_flags FROM predict_app;

-- prediction_resolutions: read with their event; written by the pipeline only
-- (event_resolutions, `events resolve`, dispute decisions).
ALTER TABLE prediction_resolutions ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Resolutions follow their event" ON prediction_resolutions FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e
                 WHERE e.id = prediction_resolutions.event_id));
REVOKE INSERT, UPDATE, DELETE ON prediction_resolutions FROM predict_app;

-- prediction_resolution_disputes: read with their event; a user opens a dispute as
-- themself on a resolution of an event they see, as 'open' with no review; reviews and
-- decisions are the pipeline's (`disputes review|close`).
ALTER TABLE prediction_resolution_disputes ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Disputes follow their event" ON prediction_resolution_disputes FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e
                 WHERE e.id = prediction_resolution_disputes.event_id));
CREATE POLICY "Disputes opened as oneself" ON prediction_resolution_disputes FOR INSERT
  WITH CHECK (disputed_by = auth.uid() AND status = 'open' AND reviewed_by IS NULL
              AND reviewed_at IS NULL AND review_notes IS NULL
              AND EXISTS (SELECT 1 FROM prediction_resolutions r
                          WHERE r.id = prediction_resolution_disputes.resolution_id
                            AND r.event_id = prediction_resolution_disputes.event_id));
REVOKE UPDATE, DELETE ON prediction_resolution_disputes FROM predict_app;

-- prediction_feed_runs: the feed owner's (feeds are private); written by the pipeline only.
ALTER TABLE prediction_feed_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Feed runs private to the feed's owner" ON prediction_feed_runs FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_data_feeds f
                 WHERE f.id = prediction_feed_runs.feed_id));
REVOKE INSERT, UPDATE, DELETE ON prediction_feed_runs FROM predict_app;

-- prediction_unmatched_signals: the feed owner's review queue; decided through
-- `signals resolve` (the pipeline role, which checks what the deciding user may see).
ALTER TABLE prediction_unmatched_signals ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Unmatched signals private to the feed's owner" ON prediction_unmatched_signals
  FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_data_feeds f
                 WHERE f.id = prediction_unmatched_signals.feed_id));
REVOKE INSERT, UPDATE, DELETE ON prediction_unmatched_signals FROM predict_app;

-- prediction_rule_executions: seen by whoever sees the rule, and only for events they see
-- (a system rule's executions name events of every tenant); written by the pipeline only.
ALTER TABLE prediction_rule_executions ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Executions follow their rule and event" ON prediction_rule_executions FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_rules r
                 WHERE r.id = prediction_rule_executions.rule_id)
         AND (event_id IS NULL
              OR EXISTS (SELECT 1 FROM prediction_events e
                         WHERE e.id = prediction_rule_executions.event_id)));
REVOKE INSERT, UPDATE, DELETE ON prediction_rule_executions FROM predict_app;

-- prediction_campaign_variants: seen with their campaign; written by the campaign's owner
-- (the spec lets only the owner update a campaign).
ALTER TABLE prediction_campaign_variants ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Variants follow their campaign" ON prediction_campaign_variants FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_campaigns c
                 WHERE c.id = prediction_campaign_variants.campaign_id));
CREATE POLICY "Variants written by the campaign's owner" ON prediction_campaign_variants
  FOR ALL
  USING (EXISTS (SELECT 1 FROM prediction_campaigns c
                 WHERE c.id = prediction_campaign_variants.campaign_id
                   AND c.user_id = auth.uid()))
  WITH CHECK (EXISTS (SELECT 1 FROM prediction_campaigns c
                      WHERE c.id = prediction_campaign_variants.campaign_id
                        AND c.user_id = auth.uid()));

-- prediction_campaign_results: seen with their campaign (revenue and spend are the
-- campaign's); recorded by the campaign's owner, as themself, for the campaign's own variants.
ALTER TABLE prediction_campaign_results ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Results follow their campaign" ON prediction_campaign_results FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_campaigns c
                 WHERE c.id = prediction_campaign_results.campaign_id));
CREATE POLICY "Results written by the campaign's owner" ON prediction_campaign_results
  FOR ALL
  USING (EXISTS (SELECT 1 FROM prediction_campaigns c
                 WHERE c.id = prediction_campaign_results.campaign_id
                   AND c.user_id = auth.uid()))
  WITH CHECK (recorded_by = auth.uid()
              AND EXISTS (SELECT 1 FROM prediction_campaigns c
                          WHERE c.id = prediction_campaign_results.campaign_id
                            AND c.user_id = auth.uid())
              AND (variant_id IS NULL
                   OR EXISTS (SELECT 1 FROM prediction_campaign_variants v
                              WHERE v.id = prediction_campaign_results.variant_id
                                AND v.campaign_id = prediction_campaign_results.campaign_id)));

-- prediction_campaign_events: seen when both the campaign and the event are; written by the
-- campaign's owner, linking only events they see (a link makes the event reach the owner's
-- campaign rules).
ALTER TABLE prediction_campaign_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Campaign links follow their campaign and event" ON prediction_campaign_events
  FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_campaigns c
                 WHERE c.id = prediction_campaign_events.campaign_id)
         AND EXISTS (SELECT 1 FROM prediction_events e
                     WHERE e.id = prediction_campaign_events.event_id));
CREATE POLICY "Campaign links written by the campaign's owner" ON prediction_campaign_events
  FOR ALL
  USING (EXISTS (SELECT 1 FROM prediction_campaigns c
                 WHERE c.id = prediction_campaign_events.campaign_id
                   AND c.user_id = auth.uid()))
  WITH CHECK (EXISTS (SELECT 1 FROM prediction_campaigns c
                      WHERE c.id = prediction_campaign_events.campaign_id
                        AND c.user_id = auth.uid())
              AND EXISTS (SELECT 1 FROM prediction_events e
                          WHERE e.id = prediction_campaign_events.event_id));

-- prediction_calibration_scores: global and per-category aggregates (no event or user in a
-- row): readable by everyone, written by the pipeline only.
-- prediction_data_sources: the source registry (migrations and the pipeline): readable by
-- everyone, written by no user.
-- prediction_categories: the category list: readable by everyone, written by no user.
REVOKE INSERT, UPDATE, DELETE
  ON prediction_calibration_scores, prediction_data_sources, prediction_categories
  FROM predict_app;

-- Subscriptions and usage already had RLS with SELECT policies only (so writes were refused
-- row by row); the privileges now say the same: billing and the pipeline write them.
REVOKE INSERT, UPDATE, DELETE ON prediction_subscriptions, prediction_usage_metrics
  FROM predict_app;

-- auth.users: a user sees their own row and the members of their orgs (not every email);
-- written by the auth-service sync (the pipeline role) only.
ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users see themselves and their orgs' members" ON auth.users FOR SELECT
  USING (id = auth.uid()
         OR id IN (SELECT m.user_id FROM prediction_org_members m
                   WHERE m.org_id IN (SELECT predict_my_org_ids())));

-- ---------------------------------------------------------------------------------------
-- Partitions. A partition read by name is not subject to its parent's policies: each has RLS
-- (without policies: nothing) and no privilege for predict_app. New tables, partitions
-- included, no longer give predict_app anything by default: a migration grants what the app
-- needs, next to the table's policies.

ALTER DEFAULT PRIVILEGES IN SCHEMA public
  REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM predict_app;

DO $$
DECLARE
  part regclass;
BEGIN
  FOR part IN
    SELECT i.inhrelid::regclass FROM pg_inherits i
    WHERE i.inhparent IN ('public.prediction_signals'::regclass,
                          'public.prediction_snapshots'::regclass)
  LOOP
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
    EXECUTE format('REVOKE ALL ON %s FROM predict_app', part);
  END LOOP;
END
$$;

-- As 0003, and each new month's partition gets RLS and no app privilege.
CREATE OR REPLACE FUNCTION predict_ensure_snapshot_partitions(from_ts timestamptz, to_ts timestamptz)
  RETURNS SETOF text
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = public, pg_temp
AS $$
DECLARE
  month_start timestamp := date_trunc('month', from_ts AT TIME ZONE 'UTC');
  last_month timestamp := date_trunc('month', to_ts AT TIME ZONE 'UTC');
  part_name text;
BEGIN
  IF from_ts IS NULL OR to_ts IS NULL OR to_ts < from_ts THEN
    RAISE EXCEPTION 'predict_ensure_snapshot_partitions: bad range % .. %', from_ts, to_ts;
  END IF;
  WHILE month_start <= last_month LOOP
    part_name := format('prediction_snapshots_y%sm%s',
                        to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
    IF to_regclass(format('public.%I', part_name)) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE public.%I PARTITION OF public.prediction_snapshots FOR VALUES FROM (%L) TO (%L)',
        part_name,
        (month_start AT TIME ZONE 'UTC'),
        ((month_start + interval '1 month') AT TIME ZONE 'UTC'));
      EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', part_name);
      EXECUTE format('REVOKE ALL ON public.%I FROM predict_app', part_name);
      RETURN NEXT part_name;
    END IF;
    month_start := month_start + interval '1 month';
  END LOOP;
END
$$;

-- As 0010 (which already enables RLS on a new partition when the parent has it), and no app
-- privilege on the new partition.
CREATE OR REPLACE FUNCTION predict_ensure_signal_partitions(from_ts timestamptz, to_ts timestamptz)
  RETURNS SETOF text
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = public, pg_temp
AS $$
DECLARE
  month_start timestamp := date_trunc('month', from_ts AT TIME ZONE 'UTC');
  last_month timestamp := date_trunc('month', to_ts AT TIME ZONE 'UTC');
  suffix text;
  part_name text;
  locked boolean := false;
BEGIN
  IF from_ts IS NULL OR to_ts IS NULL OR to_ts < from_ts THEN
    RAISE EXCEPTION 'predict_ensure_signal_partitions: bad range % .. %', from_ts, to_ts;
  END IF;
  WHILE month_start <= last_month LOOP
    suffix := format('y%sm%s', to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
    part_name := 'prediction_signals_' || suffix;
    IF to_regclass(format('public.%I', part_name)) IS NULL THEN
      IF NOT locked THEN
        -- Concurrent callers wait here for the first one's commit, then see its partition.
        LOCK TABLE public.prediction_signals IN SHARE UPDATE EXCLUSIVE MODE;
        locked := true;
      END IF;
      IF to_regclass(format('public.%I', part_name)) IS NULL THEN
        EXECUTE format(
          'CREATE TABLE public.%I (LIKE public.prediction_signals'
          ' INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part_name);
        EXECUTE format(
          'CREATE UNIQUE INDEX %I ON public.%I (source, source_event_id, signal_type,'
          ' date_bin(%L, fetched_at, TIMESTAMPTZ %L)) WHERE source_event_id IS NOT NULL',
          'idx_signals_dedup_' || suffix, part_name,
          '5 minutes', '2000-01-01 00:00:00+00');
        -- A partition read directly must not show more than the parent's policies would.
        IF (SELECT relrowsecurity FROM pg_class WHERE oid = 'public.prediction_signals'::regclass)
        THEN
          EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', part_name);
        END IF;
        EXECUTE format('REVOKE ALL ON public.%I FROM predict_app', part_name);
        -- ATTACH adds the parent's other indexes, its primary key and its foreign keys.
        EXECUTE format(
          'ALTER TABLE public.prediction_signals ATTACH PARTITION public.%I'
          ' FOR VALUES FROM (%L) TO (%L)',
          part_name,
          (month_start AT TIME ZONE 'UTC'),
          ((month_start + interval '1 month') AT TIME ZONE 'UTC'));
        RETURN NEXT part_name;
      END IF;
    END IF;
    month_start := month_start + interval '1 month';
  END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------
-- The audit log.

-- Fix of a spec defect: "Audit log admin only" let an owner or admin of ANY org read EVERY
-- org's audit rows (its EXISTS never compared orgs), so creating an org opened the whole log.
-- Same name, now scoped: an owner or admin reads the rows about their own org — the org
-- itself, its memberships (also after removal, by the org in the entry's details), and the
-- events, rules and campaigns of the org and the flags, resolutions and disputes of its
-- events.
DROP POLICY "Audit log admin only" ON prediction_audit_log;
CREATE POLICY "Audit log admin only" ON prediction_audit_log FOR SELECT
  USING (
    (resource_type = 'prediction_orgs'
     AND resource_id IN (SELECT predict_my_admin_org_ids()))
    OR (resource_type = 'prediction_org_members'
        AND (details->>'org_id' IN (SELECT o::text FROM predict_my_admin_org_ids() o)
             OR resource_id IN (SELECT m.id FROM prediction_org_members m
                                WHERE m.org_id IN (SELECT predict_my_admin_org_ids()))))
    OR (resource_type = 'prediction_events'
        AND resource_id IN (SELECT e.id FROM prediction_events e
                            WHERE e.org_id IN (SELECT predict_my_admin_org_ids())))
    OR (resource_type = 'prediction_rules'
        AND resource_id IN (SELECT r.id FROM prediction_rules r
                            WHERE r.org_id IN (SELECT predict_my_admin_org_ids())))
    OR (resource_type = 'prediction_campaigns'
        AND resource_id IN (SELECT c.id FROM prediction_campaigns c
                            WHERE c.org_id IN (SELECT predict_my_admin_org_ids())))
    OR (resource_type = 'prediction_trust_flags'
        AND resource_id IN (SELECT f.id FROM prediction_trust_flags f
                            JOIN prediction_events e ON e.id = f.event_id
                            WHERE e.org_id IN (SELECT predict_my_admin_org_ids())))
    OR (resource_type = 'prediction_resolutions'
        AND resource_id IN (SELECT r.id FROM prediction_resolutions r
                            JOIN prediction_events e ON e.id = r.event_id
                            WHERE e.org_id IN (SELECT predict_my_admin_org_ids())))
    OR (resource_type = 'prediction_resolution_disputes'
        AND resource_id IN (SELECT d.id FROM prediction_resolution_disputes d
                            JOIN prediction_events e ON e.id = d.event_id
                            WHERE e.org_id IN (SELECT predict_my_admin_org_ids())))
  );

-- Entries are written as oneself: the acting user, or one of their own API keys. (The
-- service and system entries are the pipeline's, which is not subject to RLS.)
DROP POLICY "Audit log append" ON prediction_audit_log;
CREATE POLICY "Audit entries written as oneself" ON prediction_audit_log FOR INSERT
  WITH CHECK (
    (actor_type = 'user' AND actor_id = auth.uid())
    OR (actor_type = 'api_key'
        AND actor_id IN (SELECT k.id FROM prediction_api_keys k WHERE k.user_id = auth.uid()))
  );

-- An entry a user writes is about something that user can see (read under their RLS), so no
-- one plants entries in another org's audit view.
CREATE POLICY "Audit entries about what one sees" ON prediction_audit_log
  AS RESTRICTIVE FOR INSERT
  WITH CHECK (
    resource_id IS NULL
    OR CASE resource_type
      WHEN 'prediction_orgs' THEN
        EXISTS (SELECT 1 FROM prediction_orgs o WHERE o.id = resource_id)
      WHEN 'prediction_org_members' THEN
        EXISTS (SELECT 1 FROM prediction_org_members m WHERE m.id = resource_id)
      WHEN 'prediction_events' THEN
        EXISTS (SELECT 1 FROM prediction_events e WHERE e.id = resource_id)
      WHEN 'prediction_rules' THEN
        EXISTS (SELECT 1 FROM prediction_rules r WHERE r.id = resource_id)
      WHEN 'prediction_campaigns' THEN
        EXISTS (SELECT 1 FROM prediction_campaigns c WHERE c.id = resource_id)
      WHEN 'prediction_trust_flags' THEN
        EXISTS (SELECT 1 FROM prediction_trust_flags f WHERE f.id = resource_id)
      WHEN 'prediction_resolutions' THEN
        EXISTS (SELECT 1 FROM prediction_resolutions r WHERE r.id = resource_id)
      WHEN 'prediction_resolution_disputes' THEN
        EXISTS (SELECT 1 FROM prediction_resolution_disputes d WHERE d.id = resource_id)
      ELSE true END
  );

-- No back-dating, for the app, the pipeline and retention: an entry's created_at is the time
-- it is written. So a row can never land inside a time slice the archive already verified.
CREATE FUNCTION predict_audit_stamp() RETURNS trigger
  LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
  IF current_user IN ('predict_app', 'predict_pipeline', 'predict_maintenance')
     AND NEW.created_at IS DISTINCT FROM now() THEN
    RAISE EXCEPTION 'an audit entry''s created_at is the time it is written (now())'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_stamp BEFORE INSERT ON prediction_audit_log
  FOR EACH ROW EXECUTE FUNCTION predict_audit_stamp();

-- Retention may delete audit rows only inside a time slice whose Parquet file the archive
-- wrote, read back and verified (a predict_meta.audit_archive row with a file); it never
-- updates them. Checked per statement, for every role: one row outside such a slice refuses
-- the whole DELETE. (Within a slice, the retention code deletes only the ids read back from
-- the file.)
REVOKE UPDATE ON prediction_audit_log FROM predict_maintenance;

CREATE FUNCTION predict_audit_delete_archived_only() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  unarchived bigint;
BEGIN
  SELECT count(*) INTO unarchived FROM gone g
  WHERE NOT EXISTS (SELECT 1 FROM predict_meta.audit_archive a
                    WHERE a.path IS NOT NULL AND a.row_count > 0
                      AND g.created_at >= a.range_start AND g.created_at < a.range_end);
  IF unarchived > 0 THEN
    RAISE EXCEPTION '% audit rows are in no verified archive: nothing deleted', unarchived
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER audit_delete_archived_only AFTER DELETE ON prediction_audit_log
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION predict_audit_delete_archived_only();

-- The archive ledger is what allows deletion: retention appends slices and marks them purged,
-- but cannot rewrite a slice once recorded.
REVOKE UPDATE ON predict_meta.audit_archive FROM predict_maintenance;
GRANT UPDATE (rows_deleted, purged_at) ON predict_meta.audit_archive TO predict_maintenance;
