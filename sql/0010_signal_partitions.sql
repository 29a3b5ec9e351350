-- 0010: prediction_signals joins prediction_snapshots in monthly range partitioning, by
-- fetched_at (the time the snapshots window on; a backfill stores the historical observation
-- time there), converted in place with its rows, grants, row-level security and indexes.
--
-- The dedup guarantee. PostgreSQL refuses a UNIQUE index on a partitioned table when its key
-- has an expression or lacks the partition key, so idx_signals_dedup cannot stay on the parent.
-- Every UTC month starts a whole number of 5-minute steps after the index's origin
-- (2000-01-01 00:00 UTC), so each 5-minute bucket lies inside one month: two rows with the
-- same key always share a partition, and a unique index on each partition
-- (idx_signals_dedup_yYYYYmMM, same key and predicate) refuses exactly what the single index
-- refused.
--
-- No DEFAULT partition: it would be scanned by every open-ended window query
-- (fetched_at >= x) and locked and scanned again whenever a month is created, and rows parked
-- in it would have to be moved out. Writers create the partitions of their rows' months first
-- (predict_ensure_signal_partitions); a row for a month without one is refused loudly, its
-- transaction rolls back, and the landed page it came from is still there for the re-run.

-- Creates the UTC-month partitions covering [from_ts, to_ts] that do not exist yet, each with
-- its dedup index, and returns the names it created; the only way a partition comes into being.
-- SECURITY DEFINER so the pipeline and maintenance roles can create them without owning the
-- table. A partition is built empty and ATTACHed: ATTACH takes SHARE UPDATE EXCLUSIVE on the
-- parent, which readers and writers do not wait for (CREATE TABLE ... PARTITION OF takes
-- ACCESS EXCLUSIVE, which would stall every reader until the creating transaction commits).
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

REVOKE ALL ON FUNCTION predict_ensure_signal_partitions(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION predict_ensure_signal_partitions(timestamptz, timestamptz)
  TO predict_pipeline, predict_maintenance;

-- ---------------------------------------------------------------------------------------
-- The conversion, in this migration's one transaction: nobody reads or writes meanwhile.

LOCK TABLE prediction_signals IN ACCESS EXCLUSIVE MODE;

-- What the old table carries besides columns and constraints, read before it is renamed so
-- the definitions name public.prediction_signals: its non-unique indexes (idx_signals_event,
-- _source, _type, _fetched, _feed, and any a later migration added), grants, RLS and policies.
CREATE TEMP TABLE signals_carried ON COMMIT DROP AS
SELECT 1 AS step, pg_get_indexdef(i.indexrelid) AS ddl
FROM pg_index i
WHERE i.indrelid = 'public.prediction_signals'::regclass
  AND NOT i.indisprimary
  AND i.indexrelid <> 'public.idx_signals_dedup'::regclass
UNION ALL
SELECT 2, format('GRANT %s ON public.prediction_signals TO %s%s',
                 a.privilege_type,
                 CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,
                 CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
FROM pg_class c
CROSS JOIN LATERAL aclexplode(c.relacl) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE c.oid = 'public.prediction_signals'::regclass AND a.grantee <> c.relowner
UNION ALL
SELECT 3, 'ALTER TABLE public.prediction_signals ENABLE ROW LEVEL SECURITY'
FROM pg_class WHERE oid = 'public.prediction_signals'::regclass AND relrowsecurity
UNION ALL
SELECT 3, 'ALTER TABLE public.prediction_signals FORCE ROW LEVEL SECURITY'
FROM pg_class WHERE oid = 'public.prediction_signals'::regclass AND relforcerowsecurity
UNION ALL
SELECT 4, format('CREATE POLICY %I ON public.prediction_signals AS %s FOR %s TO %s%s%s',
                 p.policyname, p.permissive, p.cmd,
                 (SELECT string_agg(CASE WHEN n = 'public' THEN 'PUBLIC' ELSE quote_ident(n) END,
                                    ', ')
                  FROM unnest(p.roles) n),
                 CASE WHEN p.qual IS NULL THEN '' ELSE ' USING (' || p.qual || ')' END,
                 CASE WHEN p.with_check IS NULL THEN ''
                      ELSE ' WITH CHECK (' || p.with_check || ')' END)
FROM pg_policies p
WHERE p.schemaname = 'public' AND p.tablename = 'prediction_signals';

-- Refuse what this conversion would not carry over, instead of dropping it silently.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index
             WHERE indrelid = 'public.prediction_signals'::regclass AND indisunique
               AND NOT indisprimary AND indexrelid <> 'public.idx_signals_dedup'::regclass) THEN
    RAISE EXCEPTION 'prediction_signals has a unique index besides its key and '
                    'idx_signals_dedup; partitioning cannot keep it';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_trigger
             WHERE tgrelid = 'public.prediction_signals'::regclass AND NOT tgisinternal) THEN
    RAISE EXCEPTION 'prediction_signals has triggers; this conversion does not carry them';
  END IF;
END
$$;

ALTER TABLE prediction_signals RENAME TO prediction_signals_unpartitioned;
ALTER TABLE prediction_signals_unpartitioned
  RENAME CONSTRAINT prediction_signals_pkey TO prediction_signals_unpartitioned_pkey;
-- Frees the index names for the new table (the rows are copied without them).
DO $$
DECLARE
  name text;
BEGIN
  FOR name IN
    SELECT i.indexrelid::regclass::text FROM pg_index i
    WHERE i.indrelid = 'public.prediction_signals_unpartitioned'::regclass AND NOT i.indisprimary
  LOOP
    EXECUTE format('DROP INDEX %s', name);
  END LOOP;
END
$$;

-- Column for column as 0002 made it; constraints keep their names. The primary key must
-- contain the partition key, so it is (id, fetched_at), as for prediction_snapshots.
CREATE TABLE prediction_signals (
  id UUID NOT NULL DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL,
  feed_id UUID,

  source TEXT NOT NULL,
  source_url TEXT,
  source_event_id TEXT,

  signal_type TEXT NOT NULL,
  value DECIMAL(10,4),
  raw_data JSONB,
  narrative TEXT,

  weight DECIMAL(3,2) DEFAULT 1.0,
  reliability DECIMAL(3,2),

  fetched_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  created_at TIMESTAMPTZ DEFAULT now(),

  CONSTRAINT prediction_signals_pkey PRIMARY KEY (id, fetched_at),
  CONSTRAINT prediction_signals_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES prediction_events(id) ON DELETE CASCADE,
  CONSTRAINT prediction_signals_feed_id_fkey
    FOREIGN KEY (feed_id) REFERENCES prediction_data_feeds(id),
  CONSTRAINT prediction_signals_signal_type_check
    CHECK (signal_type IN ('MARKET_PRICE', 'SENTIMENT', 'VOLUME', 'NEWS', 'SOCIAL', 'EXPERT',
                           'MANUAL')),
  CONSTRAINT prediction_signals_weight_check CHECK (weight >= 0 AND weight <= 5),
  CONSTRAINT prediction_signals_reliability_check CHECK (reliability >= 0 AND reliability <= 1)
) PARTITION BY RANGE (fetched_at);

-- The grants default privileges gave the new table go first, so that the old table's grants
-- (including anything revoked from it) are exactly what remains.
DO $$
DECLARE
  statement text;
BEGIN
  FOR statement IN
    SELECT format('REVOKE %s ON public.prediction_signals FROM %s', a.privilege_type,
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END)
    FROM pg_class c
    CROSS JOIN LATERAL aclexplode(c.relacl) a
    LEFT JOIN pg_roles r ON r.oid = a.grantee
    WHERE c.oid = 'public.prediction_signals'::regclass AND a.grantee <> c.relowner
  LOOP
    EXECUTE statement;
  END LOOP;
  FOR statement IN SELECT ddl FROM signals_carried ORDER BY step, ddl LOOP
    EXECUTE statement;
  END LOOP;
END
$$;

-- The months that hold rows, and the current and next month; maintenance keeps them coming.
SELECT predict_ensure_signal_partitions(m, m)
FROM (SELECT DISTINCT date_trunc('month', fetched_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m
      FROM prediction_signals_unpartitioned
      UNION
      SELECT now()
      UNION
      SELECT now() + interval '1 month') months;

INSERT INTO prediction_signals
  (id, event_id, feed_id, source, source_url, source_event_id, signal_type, value, raw_data,
   narrative, weight, reliability, fetched_at, created_at)
SELECT id, event_id, feed_id, source, source_url, source_event_id, signal_type, value, raw_data,
       narrative, weight, reliability, fetched_at, created_at
FROM prediction_signals_unpartitioned;

DROP TABLE prediction_signals_unpartitioned;

-- Autovacuum analyses the partitions in time; the planner needs their statistics now.
ANALYZE prediction_signals;
