-- 0132: prediction_feed_run_landings, an extension table: the landing record of each feed run,
-- where stage 1 (raw_feed_fetches, uploads, webhook deliveries) hands over to stage 2
-- (validated_signals). Stage 1 writes the row when it closes the run: the window it fetched (a
-- push: the hour it landed in) and the landing file its pages went to. Stage 2 finds a file's
-- run through it and keeps the run's validation state on it. These were JSON keys of
-- prediction_feed_runs.error_details (landing_file, window, validation, validated_at,
-- validation_error, fetch_status, fetch_error_message): they are carried over below and removed
-- there, so error_details keeps what the fetch says of itself, nothing of the hand-over. A feed
-- owner reads the rows of their own feeds, as they read the runs; only the pipeline writes.
CREATE TABLE prediction_feed_run_landings (
  feed_run_id UUID PRIMARY KEY REFERENCES prediction_feed_runs(id) ON DELETE CASCADE,
  feed_id UUID NOT NULL REFERENCES prediction_data_feeds(id) ON DELETE CASCADE,
  window_start TIMESTAMPTZ NOT NULL,
  window_end TIMESTAMPTZ NOT NULL,
  landing_file TEXT,                   -- NULL: the run landed nothing
  -- PENDING: landed, not validated yet; VALIDATED: its records were written; FAILED: the last
  -- validation was rolled back (validation_error says why). NULL when nothing landed.
  validation_status TEXT CHECK (validation_status IN ('PENDING', 'VALIDATED', 'FAILED')),
  validated_at TIMESTAMPTZ,            -- the last validation that wrote the run's records
  records_rejected INTEGER NOT NULL DEFAULT 0 CHECK (records_rejected >= 0),
  rejected_reasons JSONB NOT NULL DEFAULT '{}',   -- reason -> records
  rejected_samples JSONB NOT NULL DEFAULT '[]',   -- a few rejected records with their reasons
  validation_error TEXT,
  -- While a failed validation shows the run FAILED: its status and message as stage 1 left
  -- them, given back by the validation that writes it.
  fetch_status TEXT,
  fetch_error_message TEXT,
  CHECK (window_end > window_start),
  CHECK ((landing_file IS NULL) = (validation_status IS NULL))
);
CREATE INDEX idx_feed_run_landings_file ON prediction_feed_run_landings (feed_id, landing_file)
  WHERE landing_file IS NOT NULL;
CREATE INDEX idx_feed_run_landings_window ON prediction_feed_run_landings (feed_id, window_start);

ALTER TABLE prediction_feed_run_landings ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Feed run landings private to the feed's owner" ON prediction_feed_run_landings
  FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_data_feeds f
                 WHERE f.id = prediction_feed_run_landings.feed_id));
GRANT SELECT ON prediction_feed_run_landings TO predict_app;

-- The runs recorded so far. A push carried no window: it landed in the UTC hour it was
-- received in, its run's started_at.
INSERT INTO prediction_feed_run_landings
  (feed_run_id, feed_id, window_start, window_end, landing_file, validation_status,
   validated_at, records_rejected, rejected_reasons, rejected_samples, validation_error,
   fetch_status, fetch_error_message)
SELECT r.id, r.feed_id, w.window_start,
       coalesce((d->'window'->>1)::timestamptz, w.window_start + interval '1 hour'),
       d->>'landing_file',
       CASE WHEN NOT d ? 'landing_file' THEN NULL
            WHEN d ? 'validation_error' THEN 'FAILED'
            WHEN d ? 'validated_at' THEN 'VALIDATED'
            ELSE 'PENDING' END,
       (d->>'validated_at')::timestamptz,
       coalesce((d->'validation'->>'rejected')::int, 0),
       coalesce(d->'validation'->'reasons', '{}'),
       coalesce(d->'validation'->'samples', '[]'),
       d->>'validation_error',
       d->>'fetch_status',
       d->>'fetch_error_message'
FROM prediction_feed_runs r
CROSS JOIN LATERAL (SELECT r.error_details AS d) e
CROSS JOIN LATERAL (
  SELECT coalesce((d->'window'->>0)::timestamptz,
                  date_bin('1 hour', r.started_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'))
    AS window_start) w
WHERE d ?| ARRAY['landing_file', 'window', 'validation', 'validated_at', 'validation_error'];

UPDATE prediction_feed_runs
SET error_details = nullif(
  error_details - 'landing_file' - 'window' - 'validation' - 'validated_at' - 'validation_error'
    - 'fetch_status' - 'fetch_error_message',
  '{}'::jsonb)
WHERE error_details ?| ARRAY['landing_file', 'window', 'validation', 'validated_at',
                             'validation_error', 'fetch_status', 'fetch_error_message'];
