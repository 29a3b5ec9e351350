-- 0041: plans. prediction_subscriptions (the spec's billing row per user) decides what a
-- user's feeds, rules, events, campaigns and org members may do: its status stops feeds
-- polling and rules firing, and its limits are enforced when rows are created (triggers
-- below) and when the pipeline runs (items beyond a limit are held, never deleted). The
-- README's "Plans" section is the user-facing description of every rule here.

-- The plan of a user without a subscription row, one row. Shipped as the free plan; an
-- installation without billing may lift it (NULL limits = unlimited, as on a subscription).
CREATE TABLE predict_meta.default_plan (
  only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
  tier TEXT NOT NULL,
  max_events INTEGER CHECK (max_events >= 0),
  max_rules INTEGER CHECK (max_rules >= 0),
  max_campaigns_per_month INTEGER CHECK (max_campaigns_per_month >= 0),
  max_feeds INTEGER CHECK (max_feeds >= 0),
  max_team_members INTEGER CHECK (max_team_members >= 1),
  realtime_enabled BOOLEAN NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO predict_meta.default_plan
  (tier, max_events, max_rules, max_campaigns_per_month, max_feeds, max_team_members,
   realtime_enabled)
VALUES ('free', 10, 5, 3, 3, 3, false);
GRANT SELECT ON predict_meta.default_plan TO predict_pipeline, predict_maintenance;

-- Every user's plan at a time: tier, whether it is in force and why not, its limits and the
-- usage period (the billing period containing `at`, else the calendar month in UTC).
--   cancelled, paused            -> not in force
--   past_due                     -> in force for 7 days after current_period_end (the grace)
--   trialing past trial_end      -> not in force
--   active/trialing past current_period_end -> not in force ("past its current period")
-- An inlinable SQL function: callers' filters on user_id reach the scans.
CREATE FUNCTION predict_user_plans(at timestamptz)
  RETURNS TABLE (user_id uuid, tier text, subscribed boolean, in_force boolean,
                 inactive_reason text, realtime boolean, max_feeds integer, max_rules integer,
                 max_events integer, max_campaigns_per_month integer,
                 max_team_members integer, period_start timestamptz, period_end timestamptz)
  LANGUAGE sql STABLE
AS $$
  SELECT u.id,
         coalesce(s.tier, d.tier),
         s.id IS NOT NULL,
         r.reason IS NULL,
         r.reason,
         CASE WHEN s.id IS NULL THEN d.realtime_enabled ELSE coalesce(s.realtime_enabled, false) END,
         CASE WHEN s.id IS NULL THEN d.max_feeds ELSE s.max_feeds END,
         CASE WHEN s.id IS NULL THEN d.max_rules ELSE s.max_rules END,
         CASE WHEN s.id IS NULL THEN d.max_events ELSE s.max_events END,
         CASE WHEN s.id IS NULL THEN d.max_campaigns_per_month ELSE s.max_campaigns_per_month END,
         CASE WHEN s.id IS NULL THEN d.max_team_members ELSE s.max_team_members END,
         CASE WHEN s.current_period_start <= at AND at < s.current_period_end
              THEN s.current_period_start
              ELSE date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END,
         CASE WHEN s.current_period_start <= at AND at < s.current_period_end
              THEN s.current_period_end
              ELSE (date_trunc('month', at AT TIME ZONE 'UTC') + interval '1 month')
                   AT TIME ZONE 'UTC' END
  FROM auth.users u
  CROSS JOIN predict_meta.default_plan d
  LEFT JOIN prediction_subscriptions s ON s.user_id = u.id
  CROSS JOIN LATERAL (SELECT CASE
      WHEN s.id IS NULL THEN NULL
      WHEN s.status = 'cancelled' THEN 'the subscription is cancelled'
      WHEN s.status = 'paused' THEN 'the subscription is paused'
      WHEN s.status = 'past_due'
           AND at >= coalesce(s.current_period_end, s.updated_at) + interval '7 days'
        THEN 'the subscription is past due beyond the 7-day grace'
      WHEN s.status = 'trialing' AND s.trial_end <= at THEN 'the trial has ended'
      WHEN s.status IN ('active', 'trialing') AND s.current_period_end <= at
        THEN 'the subscription is past its current period'
    END AS reason) r
$$;
GRANT EXECUTE ON FUNCTION predict_user_plans(timestamptz)
  TO predict_pipeline, predict_maintenance;

-- What counts against each limit (the same in the triggers, the holds and usage):
--   max_feeds: enabled feeds; max_rules: enabled rules (not system rules); max_events: events
--   the user created that are ACTIVE or PAUSED; max_campaigns_per_month: campaigns created in
--   the usage period; max_team_members: members of each org the user owns (owner included).
CREATE INDEX idx_events_created_by ON prediction_events(created_by) WHERE created_by IS NOT NULL;

-- Items the pipeline must hold at `at`, with the reason: a plan not in force holds the user's
-- feeds and rules; past a limit (after a downgrade), the newest items beyond it are held. Held
-- is never deleted: the item resumes when the plan allows it again.
CREATE FUNCTION predict_plan_holds_live(at timestamptz)
  RETURNS TABLE (kind text, resource_id uuid, user_id uuid, reason text)
  LANGUAGE sql STABLE
AS $$
  WITH plans AS (SELECT * FROM predict_user_plans(at))
  SELECT 'feed', f.id, f.user_id,
         CASE WHEN NOT p.in_force THEN p.inactive_reason
              ELSE format('beyond max_feeds (%s) of the %s plan', p.max_feeds, p.tier) END
  FROM (SELECT id, user_id,
               row_number() OVER (PARTITION BY user_id ORDER BY created_at, id) AS n
        FROM prediction_data_feeds WHERE enabled) f
  JOIN plans p ON p.user_id = f.user_id
  WHERE NOT p.in_force OR f.n > p.max_feeds
  UNION ALL
  SELECT 'rule', r.id, r.user_id,
         CASE WHEN NOT p.in_force THEN p.inactive_reason
              ELSE format('beyond max_rules (%s) of the %s plan', p.max_rules, p.tier) END
  FROM (SELECT id, user_id,
               row_number() OVER (PARTITION BY user_id ORDER BY created_at, id) AS n
        FROM prediction_rules WHERE enabled AND is_system IS NOT TRUE) r
  JOIN plans p ON p.user_id = r.user_id
  WHERE NOT p.in_force OR r.n > p.max_rules
  UNION ALL
  SELECT 'event', e.id, e.created_by,
         format('beyond max_events (%s) of the %s plan', p.max_events, p.tier)
  FROM (SELECT id, created_by,
               row_number() OVER (PARTITION BY created_by ORDER BY created_at, id) AS n
        FROM prediction_events
        WHERE status IN ('ACTIVE', 'PAUSED')
          AND created_by IN (SELECT user_id FROM plans WHERE max_events IS NOT NULL)) e
  JOIN plans p ON p.user_id = e.created_by
  WHERE e.n > p.max_events
  UNION ALL
  SELECT 'campaign', c.id, c.user_id,
         format('beyond max_campaigns_per_month (%s) of the %s plan',
                p.max_campaigns_per_month, p.tier)
  FROM (SELECT c.id, c.user_id,
               row_number() OVER (PARTITION BY c.user_id ORDER BY c.created_at, c.id) AS n
        FROM prediction_campaigns c JOIN plans p ON p.user_id = c.user_id
        WHERE p.max_campaigns_per_month IS NOT NULL
          AND c.created_at >= p.period_start AND c.created_at < p.period_end) c
  JOIN plans p ON p.user_id = c.user_id
  WHERE c.n > p.max_campaigns_per_month
  UNION ALL
  -- The owner is always within the org's limit; then members by seniority.
  SELECT 'member', m.id, m.user_id,
         format('beyond max_team_members (%s) of the org owner''s %s plan',
                p.max_team_members, p.tier)
  FROM (SELECT m.id, m.user_id, o.owner_id,
               row_number() OVER (PARTITION BY m.org_id
                                  ORDER BY (m.role = 'owner') DESC, m.created_at, m.id) AS n
        FROM prediction_org_members m JOIN prediction_orgs o ON o.id = m.org_id
        WHERE o.owner_id IN (SELECT user_id FROM plans WHERE max_team_members IS NOT NULL)) m
  JOIN plans p ON p.user_id = m.owner_id
  WHERE m.n > p.max_team_members
$$;
GRANT EXECUTE ON FUNCTION predict_plan_holds_live(timestamptz)
  TO predict_pipeline, predict_maintenance;

-- The holds as recorded (by predict_pipeline.plans.record_plan_holds, from the sensors): when
-- each began and why. A hold's start and end are audited (plan.hold / plan.release).
CREATE TABLE predict_meta.plan_holds (
  kind TEXT NOT NULL CHECK (kind IN ('feed', 'rule', 'event', 'campaign', 'member')),
  resource_id UUID NOT NULL,
  user_id UUID NOT NULL,
  reason TEXT NOT NULL,
  held_since TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (kind, resource_id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON predict_meta.plan_holds TO predict_pipeline;
GRANT SELECT ON predict_meta.plan_holds TO predict_maintenance;

-- The rules the rule tick evaluates: enabled, not held, and of the cadence asked for —
-- 'realtime' (owners whose plan has realtime_enabled: every tick), 'hourly' (the others: at
-- most once an hour), NULL (both).
CREATE FUNCTION predict_tick_rules(at timestamptz, cadence text)
  RETURNS TABLE (rule_id uuid)
  LANGUAGE sql STABLE
AS $$
  SELECT r.id FROM prediction_rules r JOIN predict_user_plans(at) p ON p.user_id = r.user_id
  WHERE r.enabled
    AND (cadence IS NULL OR p.realtime = (cadence = 'realtime'))
    AND r.id NOT IN (SELECT h.resource_id FROM predict_plan_holds_live(at) h
                     WHERE h.kind = 'rule')
$$;
GRANT EXECUTE ON FUNCTION predict_tick_rules(timestamptz, text) TO predict_pipeline;

-- A member held by the org owner's plan has no rights in the org until the plan allows it:
-- the membership functions of 0040 skip recorded member holds (RLS reads these on every
-- query, so they read the recorded holds, not the live computation).
CREATE OR REPLACE FUNCTION predict_my_org_ids() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT m.org_id FROM prediction_org_members m
  WHERE m.user_id = auth.uid()
    AND NOT EXISTS (SELECT 1 FROM predict_meta.plan_holds h
                    WHERE h.kind = 'member' AND h.resource_id = m.id)
$$;
CREATE OR REPLACE FUNCTION predict_my_admin_org_ids() RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT m.org_id FROM prediction_org_members m
  WHERE m.user_id = auth.uid() AND m.role IN ('owner', 'admin')
    AND NOT EXISTS (SELECT 1 FROM predict_meta.plan_holds h
                    WHERE h.kind = 'member' AND h.resource_id = m.id)
$$;
CREATE OR REPLACE FUNCTION predict_org_role(org uuid) RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
  SELECT m.role FROM prediction_org_members m
  WHERE m.org_id = org AND m.user_id = auth.uid()
    AND NOT EXISTS (SELECT 1 FROM predict_meta.plan_holds h
                    WHERE h.kind = 'member' AND h.resource_id = m.id)
$$;

-- ---------------------------------------------------------------------------------------
-- Limits at creation, for every role and every path (CLI, API, pipeline): a statement that
-- would take a user past a limit fails with SQLSTATE PL001 and one line saying which limit.
-- Only rows that newly count are checked, so a user already over a limit after a downgrade
-- can still edit what they have. A per-user advisory lock makes concurrent creations count
-- each other.

CREATE FUNCTION predict_plan_limit(owners uuid[], what text, at timestamptz)
  RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  owner uuid;
  plan record;
  used bigint;
  limit_value integer;
BEGIN
  FOR owner IN SELECT DISTINCT o FROM unnest(owners) o WHERE o IS NOT NULL ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended('predict_plan:' || owner::text, 0));
    SELECT * INTO plan FROM predict_user_plans(at) p WHERE p.user_id = owner;
    IF NOT FOUND THEN
      CONTINUE;
    END IF;
    limit_value := CASE what WHEN 'max_feeds' THEN plan.max_feeds
                             WHEN 'max_rules' THEN plan.max_rules
                             WHEN 'max_events' THEN plan.max_events
                             WHEN 'max_campaigns_per_month' THEN plan.max_campaigns_per_month
                   END;
    CONTINUE WHEN limit_value IS NULL;
    used := CASE what
      WHEN 'max_feeds' THEN
        (SELECT count(*) FROM prediction_data_feeds WHERE user_id = owner AND enabled)
      WHEN 'max_rules' THEN
        (SELECT count(*) FROM prediction_rules
         WHERE user_id = owner AND enabled AND is_system IS NOT TRUE)
      WHEN 'max_events' THEN
        (SELECT count(*) FROM prediction_events
         WHERE created_by = owner AND status IN ('ACTIVE', 'PAUSED'))
      WHEN 'max_campaigns_per_month' THEN
        (SELECT count(*) FROM prediction_campaigns
         WHERE user_id = owner AND created_at >= plan.period_start
           AND created_at < plan.period_end)
    END;
    IF used > limit_value THEN
      RAISE EXCEPTION 'plan limit: the % plan allows % % (%); this would make %',
        plan.tier, limit_value,
        CASE what WHEN 'max_feeds' THEN 'enabled feeds' WHEN 'max_rules' THEN 'enabled rules'
                  WHEN 'max_events' THEN 'open events'
                  ELSE 'campaigns this period' END,
        what, used
        USING ERRCODE = 'PL001',
              HINT = 'upgrade the plan, or disable, close or remove one first';
    END IF;
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION predict_plan_limit(uuid[], text, timestamptz) FROM PUBLIC;

-- Inserts: a statement trigger over the inserted rows (a bulk insert checks once per owner).
-- Updates: a row trigger whose WHEN lets through only a row that newly counts (enabled again,
-- reopened, moved to another owner), so the pipeline's frequent updates of feeds, rules and
-- events cost nothing here.
CREATE FUNCTION predict_limit_inserted() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  PERFORM predict_plan_limit(
    ARRAY(SELECT (to_jsonb(a)->>TG_ARGV[1])::uuid FROM added a
          WHERE CASE TG_ARGV[0]
                  WHEN 'max_feeds' THEN (to_jsonb(a)->>'enabled')::boolean
                  WHEN 'max_rules' THEN (to_jsonb(a)->>'enabled')::boolean
                                        AND (to_jsonb(a)->>'is_system') IS DISTINCT FROM 'true'
                  WHEN 'max_events' THEN to_jsonb(a)->>'status' IN ('ACTIVE', 'PAUSED')
                  ELSE true END),
    TG_ARGV[0], now());
  RETURN NULL;
END
$$;
CREATE FUNCTION predict_limit_updated() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
  PERFORM predict_plan_limit(ARRAY[(to_jsonb(NEW)->>TG_ARGV[1])::uuid], TG_ARGV[0], now());
  RETURN NULL;
END
$$;

CREATE TRIGGER limit_feeds_insert AFTER INSERT ON prediction_data_feeds
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT
  EXECUTE FUNCTION predict_limit_inserted('max_feeds', 'user_id');
CREATE TRIGGER limit_feeds_update AFTER UPDATE OF enabled, user_id ON prediction_data_feeds
  FOR EACH ROW WHEN (NEW.enabled AND NOT (OLD.enabled AND OLD.user_id = NEW.user_id))
  EXECUTE FUNCTION predict_limit_updated('max_feeds', 'user_id');

CREATE TRIGGER limit_rules_insert AFTER INSERT ON prediction_rules
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT
  EXECUTE FUNCTION predict_limit_inserted('max_rules', 'user_id');
CREATE TRIGGER limit_rules_update AFTER UPDATE OF enabled, is_system, user_id ON prediction_rules
  FOR EACH ROW WHEN (NEW.enabled AND NEW.is_system IS NOT TRUE
                     AND NOT (OLD.enabled AND OLD.is_system IS NOT TRUE
                              AND OLD.user_id = NEW.user_id))
  EXECUTE FUNCTION predict_limit_updated('max_rules', 'user_id');

CREATE TRIGGER limit_events_insert AFTER INSERT ON prediction_events
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT
  EXECUTE FUNCTION predict_limit_inserted('max_events', 'created_by');
CREATE TRIGGER limit_events_update AFTER UPDATE OF status, created_by ON prediction_events
  FOR EACH ROW WHEN (NEW.status IN ('ACTIVE', 'PAUSED') AND NEW.created_by IS NOT NULL
                     AND NOT (OLD.status IN ('ACTIVE', 'PAUSED')
                              AND OLD.created_by IS NOT DISTINCT FROM NEW.created_by))
  EXECUTE FUNCTION predict_limit_updated('max_events', 'created_by');

CREATE TRIGGER limit_campaigns_insert AFTER INSERT ON prediction_campaigns
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT
  EXECUTE FUNCTION predict_limit_inserted('max_campaigns_per_month', 'user_id');
CREATE TRIGGER limit_campaigns_update AFTER UPDATE OF user_id ON prediction_campaigns
  FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
  EXECUTE FUNCTION predict_limit_updated('max_campaigns_per_month', 'user_id');

-- Members count per org against the org owner's plan.
CREATE FUNCTION predict_limit_members() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
  org record;
BEGIN
  FOR org IN
    SELECT o.id, o.owner_id, p.tier, p.max_team_members
    FROM prediction_orgs o JOIN predict_user_plans(now()) p ON p.user_id = o.owner_id
    WHERE o.id IN (SELECT org_id FROM added) AND p.max_team_members IS NOT NULL
    ORDER BY o.id
  LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended('predict_plan:' || org.owner_id::text, 0));
    IF (SELECT count(*) FROM prediction_org_members m WHERE m.org_id = org.id)
       > org.max_team_members THEN
      RAISE EXCEPTION 'plan limit: the org owner''s % plan allows % team members '
        '(max_team_members); this would make %', org.tier, org.max_team_members,
        (SELECT count(*) FROM prediction_org_members m WHERE m.org_id = org.id)
        USING ERRCODE = 'PL001',
              HINT = 'the org''s owner can upgrade the plan, or remove a member first';
    END IF;
  END LOOP;
  RETURN NULL;
END
$$;
CREATE TRIGGER limit_members_insert AFTER INSERT ON prediction_org_members
  REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION predict_limit_members();
