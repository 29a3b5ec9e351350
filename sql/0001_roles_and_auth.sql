-- 0001: roles, the auth schema and auth.uid(), which every RLS policy uses.

-- Fix: the spec used these roles before creating them and gave them a placeholder password.
-- Roles are cluster-wide (several databases may share them), so create each only if missing,
-- with no password: passwords (or certificate/IAM auth) come from the deployment, never the repo.
DO $$
DECLARE
  wanted CONSTANT text[][] := ARRAY[
    -- User-facing application role: subject to RLS, append-only on the audit log.
    ['predict_app', 'LOGIN NOBYPASSRLS'],
    -- Analytics / reporting.
    ['predict_readonly', 'LOGIN NOBYPASSRLS'],
    -- The pipeline (assets, sensors, schedules) reads across users: RLS protects user-facing
    -- access only. It is still append-only on the audit log.
    ['predict_pipeline', 'LOGIN BYPASSRLS'],
    -- Retention: the only role that may delete audit rows (after they are archived).
    ['predict_maintenance', 'LOGIN BYPASSRLS']
  ];
  i int;
BEGIN
  FOR i IN 1 .. array_length(wanted, 1) LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted[i][1]) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I %s', wanted[i][1], wanted[i][2]);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- another database on this cluster created it at the same moment
      END;
    END IF;
  END LOOP;
END
$$;

CREATE SCHEMA IF NOT EXISTS auth;

-- Fix: auth.uid() was never defined. The API layer (and tests) act as a user with
-- set_config('app.user_id', '<uuid>', true); unset or reset ('') means no user (NULL).
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
  LANGUAGE sql STABLE
  AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;
