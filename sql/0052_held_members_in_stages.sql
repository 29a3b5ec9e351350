-- 0052: the stages' membership (0050's predict_user_orgs) skips members held by the org
-- owner's plan, as RLS's membership functions do since 0041: a held member's feeds and
-- rules see the org's private events no more than the member does through the API.
CREATE OR REPLACE FUNCTION predict_user_orgs(member_id uuid)
  RETURNS uuid[]
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT ARRAY(SELECT m.org_id FROM prediction_org_members m
                     WHERE m.user_id = member_id
                       AND NOT EXISTS (SELECT 1 FROM predict_meta.plan_holds h
                                       WHERE h.kind = 'member' AND h.resource_id = m.id)
                     ORDER BY m.org_id) $$;
