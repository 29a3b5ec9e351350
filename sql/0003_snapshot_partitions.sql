-- 0003: monthly partitions of prediction_snapshots, created ahead of need.

-- Creates the UTC-month partitions covering [from_ts, to_ts] that do not exist yet and returns
-- the names it created. SECURITY DEFINER so the pipeline and maintenance roles can keep
-- partitions coming without owning the table (DDL stays here, in versioned SQL).
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
      RETURN NEXT part_name;
    END IF;
    month_start := month_start + interval '1 month';
  END LOOP;
END
$$;

REVOKE ALL ON FUNCTION predict_ensure_snapshot_partitions(timestamptz, timestamptz) FROM PUBLIC;

-- The current and next month exist from the start; maintenance keeps them coming.
SELECT predict_ensure_snapshot_partitions(now(), now() + interval '1 month');
