-- 0009: what retention (the spec's "Data Retention Policies") needs: indexes for its bounded
-- batches, dropping old snapshot partitions, and the ledger of audit-log archives.

-- Batches pick the oldest rows by the spec's age column; without these indexes every batch
-- would scan the whole table, and deleting a feed run would scan the unmatched signals for
-- each row (the foreign key check).
CREATE INDEX idx_runs_created ON prediction_feed_runs(created_at);
CREATE INDEX idx_unmatched_resolved_created ON prediction_unmatched_signals(created_at)
  WHERE status IN ('DISCARDED', 'MATCHED');
CREATE INDEX idx_unmatched_feed_run ON prediction_unmatched_signals(feed_run_id)
  WHERE feed_run_id IS NOT NULL;
-- Snapshots arrive in time order: BRIN finds one day's rows for downsampling at almost no
-- cost to the snapshot writes (a B-tree on snapshot_at would slow every insert).
CREATE INDEX idx_snapshots_time_brin ON prediction_snapshots USING brin (snapshot_at);

-- Drops (or, with dry_run, only lists) the monthly partitions of prediction_snapshots whose
-- whole range ends at or before before_ts, with the rows each held. SECURITY DEFINER: only
-- the table's owner may drop partitions, and only the maintenance role may call this.
-- lock_timeout: detaching a partition locks the parent; never queue behind a long writer and
-- block every reader meanwhile — fail loudly and try again the next day.
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
    WHERE i.inhparent = 'public.prediction_snapshots'::regclass
    ORDER BY 2
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

REVOKE ALL ON FUNCTION predict_drop_snapshot_partitions(timestamptz, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION predict_drop_snapshot_partitions(timestamptz, boolean)
  TO predict_maintenance;

-- One row per verified Parquet archive of a time slice of prediction_audit_log. Rows are
-- deleted from the database only within slices recorded here, and only rows found in the
-- slice's file; purged_at marks a slice whose rows are all past the deletion age and gone.
CREATE TABLE predict_meta.audit_archive (
  range_start TIMESTAMPTZ PRIMARY KEY,
  range_end TIMESTAMPTZ NOT NULL CHECK (range_end > range_start),
  path TEXT,                             -- NULL when the slice held no rows
  row_count BIGINT NOT NULL CHECK (row_count >= 0),
  rows_sha256 TEXT NOT NULL,             -- of the rows in canonical form, as read back
  file_sha256 TEXT,
  file_bytes BIGINT NOT NULL DEFAULT 0,
  archived_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  rows_deleted BIGINT NOT NULL DEFAULT 0,
  purged_at TIMESTAMPTZ
);
CREATE INDEX idx_audit_archive_unpurged ON predict_meta.audit_archive(range_start)
  WHERE purged_at IS NULL;
GRANT SELECT, INSERT, UPDATE ON predict_meta.audit_archive TO predict_maintenance;
GRANT SELECT ON predict_meta.audit_archive TO predict_pipeline;
