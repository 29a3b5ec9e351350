-- 0050: who may see what, defined once, for the stages that run as the BYPASSRLS pipeline role.
--
-- RLS protects user-facing access; the pipeline's own stages (matching, the review queue, the
-- rule tick, rule actions, the CLI's --as views) enforce visibility in their SQL with these
-- functions, so every stage asks the same question the same way.
--
-- A *viewer* is a user (or none) and the orgs whose private events it sees:
--   a user                 (user, every org the user is a member of: predict_user_orgs)
--   an org (--org views)   (none, {org})
--   a personal rule        its owner, as a user
--   an org rule            (none, {its org} while its owner is a member of that org): the org's
--                          visibility; a private event of another of the owner's orgs, or one
--                          the owner created outside the org, is not the org's to see.
--   a system rule          (none, {}): public events only. Every user can read system rules
--                          (the spec's "Users see own or org rules" policy), so their firings
--                          must never carry a private event.
-- A viewer sees an event that is public, that belongs to one of its orgs (the spec's two
-- SELECT policies on prediction_events), or that its user created.

-- The one visibility predicate. IMMUTABLE and a single expression, so the planner inlines it
-- into the caller's query (no function call per row); NULLs count as "no".
CREATE FUNCTION predict_sees_event(viewer uuid, viewer_orgs uuid[], is_public boolean,
                                   event_org uuid, created_by uuid)
  RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT coalesce(is_public, false)
               OR coalesce(event_org = ANY(viewer_orgs), false)
               OR coalesce(created_by = viewer, false) $$;

-- The orgs a user is a member of (any role, accepted or not, as the spec's policies read it).
-- Evaluate it once per user (a CTE or a lateral join), not per row.
CREATE FUNCTION predict_user_orgs(member_id uuid)
  RETURNS uuid[]
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT ARRAY(SELECT m.org_id FROM prediction_org_members m
                     WHERE m.user_id = member_id ORDER BY m.org_id) $$;

-- The viewer a rule acts as (see above). SETOF with one row so that, called in FROM (LATERAL),
-- the planner inlines it as a subquery of the caller's query.
CREATE FUNCTION predict_rule_viewer(rule_owner uuid, rule_org uuid, is_system boolean)
  RETURNS TABLE (viewer uuid, viewer_orgs uuid[])
  LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
  AS $$
    SELECT CASE WHEN coalesce(is_system, false) OR rule_org IS NOT NULL THEN NULL ELSE rule_owner END,
           CASE WHEN coalesce(is_system, false) THEN '{}'::uuid[]
                WHEN rule_org IS NOT NULL THEN
                  CASE WHEN EXISTS (SELECT 1 FROM prediction_org_members m
                                    WHERE m.org_id = rule_org AND m.user_id = rule_owner)
                       THEN ARRAY[rule_org] ELSE '{}'::uuid[] END
                ELSE predict_user_orgs(rule_owner) END
  $$;

-- A campaign a viewer may see: its own, or one of its orgs' (the spec's "Users see own or org
-- campaigns"). A campaign-scoped rule sees the events of a campaign only if it sees the campaign.
CREATE FUNCTION predict_sees_campaign(viewer uuid, viewer_orgs uuid[], campaign_owner uuid,
                                      campaign_org uuid)
  RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT coalesce(campaign_owner = viewer, false)
               OR coalesce(campaign_org = ANY(viewer_orgs), false) $$;

-- A campaign a user may change: only their own (the spec's "Users update own campaigns",
-- USING (auth.uid() = user_id)); org membership grants no write. Rule actions ask it with the
-- rule's owner.
CREATE FUNCTION predict_may_update_campaign(actor uuid, campaign_owner uuid)
  RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT coalesce(campaign_owner = actor, false) $$;

GRANT EXECUTE ON FUNCTION predict_sees_event(uuid, uuid[], boolean, uuid, uuid),
  predict_user_orgs(uuid), predict_rule_viewer(uuid, uuid, boolean),
  predict_sees_campaign(uuid, uuid[], uuid, uuid), predict_may_update_campaign(uuid, uuid)
  TO predict_app, predict_readonly, predict_pipeline, predict_maintenance;
