-- 0135: prediction_market_edges, an extension table: each market's price minus the pooled
-- probability, per event snapshot interval (issue 22 item 5), read by the EDGE_AT_LEAST trigger.
--
-- One row per event × market (source, source_event_id) × snapshot interval in which the market
-- quoted a price: written by event_snapshots in the statement that writes the interval's
-- prediction_snapshots rows (predict_pipeline/snapshots/compute.py), replaced with them on a
-- re-run, read with their event. Stored exactly:
--   price               the market's latest MARKET_PRICE value in the interval, as landed (not
--                       clipped: the pooling clips to [0.001, 0.999] only inside its log-odds);
--   observed_at         that signal's fetched_at;
--   pooled_probability  the interval's prediction_snapshots.probability, as stored (4 decimals),
--                       so an edge always agrees with the snapshot a reader sees next to it;
--   edge                price − pooled_probability, exact numeric (a rule's threshold compares
--                       with it exactly); positive: the market prices YES above the pool.
-- A market without a price in an interval gets no row there: its last price is not carried
-- forward (a stale quote would make an edge nobody quoted), nor is a market's edge made against
-- a carried-forward pool it took no part in.
--
-- Monthly partitions by snapshot_at, as prediction_snapshots: made by
-- predict_ensure_market_edge_partitions (retention/partitions.py, with the snapshots') and
-- dropped with the snapshots by predict_drop_snapshot_partitions, replaced below.
--
-- No foreign key to prediction_events: its per-row check cost 10 of the snapshot step's 24 s in
-- bench/snapshots.py (720,000 edges). Each edge is written by the statement that writes its
-- interval's snapshot, whose own foreign key proves the event exists; an event's deletion
-- takes its edges with it by the statement trigger below, as ON DELETE CASCADE would.
CREATE TABLE prediction_market_edges (
  event_id UUID NOT NULL,
  source TEXT NOT NULL,
  source_event_id TEXT NOT NULL,
  price DECIMAL(10,4) NOT NULL CHECK (price >= 0 AND price <= 1),
  observed_at TIMESTAMPTZ NOT NULL,
  pooled_probability DECIMAL(5,4) NOT NULL
    CHECK (pooled_probability >= 0 AND pooled_probability <= 1),
  edge DECIMAL(6,4) NOT NULL CHECK (edge >= -1 AND edge <= 1),
  snapshot_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (event_id, snapshot_at, source, source_event_id),
  CHECK (edge = price - pooled_probability)
) PARTITION BY RANGE (snapshot_at);

CREATE FUNCTION predict_delete_market_edges() RETURNS trigger
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = public, pg_temp
AS $$
BEGIN
  DELETE FROM prediction_market_edges m USING deleted_events d WHERE m.event_id = d.id;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION predict_delete_market_edges() FROM PUBLIC;
CREATE TRIGGER market_edges_go_with_their_event AFTER DELETE ON prediction_events
  REFERENCING OLD TABLE AS deleted_events
  FOR EACH STATEMENT EXECUTE FUNCTION predict_delete_market_edges();

ALTER TABLE prediction_market_edges ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Market edges follow their event" ON prediction_market_edges FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e WHERE e.id = prediction_market_edges.event_id));
GRANT SELECT ON prediction_market_edges TO predict_app;
GRANT SELECT ON prediction_market_edges TO predict_maintenance;

-- The snapshot interval's quotes travel from the pooling aggregate to the write as an array of
-- these (compute.py's snapshot_batch.quotes): one per MARKET_PRICE signal of the interval.
CREATE TYPE prediction_market_quote AS (
  source TEXT,
  source_event_id TEXT,
  fetched_at TIMESTAMPTZ,
  price DECIMAL(10,4)
);

-- Concatenates arrays across groups: the per-source pooling path (more sources than slots)
-- gathers each source's quotes, then the event's.
CREATE AGGREGATE predict_array_cat_agg(anycompatiblearray) (
  SFUNC = array_cat,
  STYPE = anycompatiblearray,
  COMBINEFUNC = array_cat,
  PARALLEL = SAFE
);

-- As predict_ensure_snapshot_partitions (sql/0040): the UTC-month partitions covering
-- [from_ts, to_ts] that do not exist yet, with RLS and no app privilege of their own.
CREATE OR REPLACE FUNCTION predict_ensure_market_edge_partitions(from_ts timestamptz,
                                                                 to_ts timestamptz)
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
    RAISE EXCEPTION 'predict_ensure_market_edge_partitions: bad range % .. %', from_ts, to_ts;
  END IF;
  WHILE month_start <= last_month LOOP
    part_name := format('prediction_market_edges_y%sm%s',
                        to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
    IF to_regclass(format('public.%I', part_name)) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE public.%I PARTITION OF public.prediction_market_edges'
        ' FOR VALUES FROM (%L) TO (%L)',
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

REVOKE ALL ON FUNCTION predict_ensure_market_edge_partitions(timestamptz, timestamptz)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION predict_ensure_market_edge_partitions(timestamptz, timestamptz)
  TO predict_pipeline, predict_maintenance;

SELECT predict_ensure_market_edge_partitions(now(), now() + interval '1 month');

-- As 0009, and the market edges' partitions go with the snapshots' (same cutoff): an edge is
-- read against its snapshot and outlives it nowhere.
CREATE OR REPLACE FUNCTION predict_drop_snapshot_partitions(before_ts timestamptz,
                                                           dry_run boolean DEFAULT false)
  RETURNS TABLE (partition_name text, range_end timestamptz, rows_held bigint)
  LANGUAGE plpgsql
  SECURITY DEFINER
  SET search_path = public, pg_temp
  SET lock_timeout = '30s'
AS $$
DECLARE
  part record;
BEGIN
  IF before_ts IS NULL THEN
    RAISE EXCEPTION 'predict_drop_snapshot_partitions: before_ts is NULL';
  END IF;
  FOR part IN
    SELECT c.relname AS name,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
             AS upper_bound
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent IN ('public.prediction_snapshots'::regclass,
                          'public.prediction_market_edges'::regclass)
    ORDER BY 2, 1
  LOOP
    -- A DEFAULT or unbounded partition has no upper bound: never dropped.
    CONTINUE WHEN part.upper_bound IS NULL OR part.upper_bound > before_ts;
    partition_name := part.name;
    range_end := part.upper_bound;
    EXECUTE format('SELECT count(*) FROM public.%I', part.name) INTO rows_held;
    IF NOT dry_run THEN
      EXECUTE format('DROP TABLE public.%I', part.name);
    END IF;
    RETURN NEXT;
  END LOOP;
END
$$;
