-- 0130: prediction_source_health_daily, an extension table: each source's health per UTC day,
-- as seed 002's fact_signal_health_daily keeps it per platform. Written by the
-- source_health_daily asset (predict_pipeline/ingestion/health.py documents each measure).
-- A row with user_id aggregates that owner's feeds of the source; the row without user_id
-- aggregates every feed of the source (the operator's platform view). Neither names a feed, a
-- market or an error message: a user reads their own rows and the platform rows; only the
-- pipeline writes.
CREATE TABLE prediction_source_health_daily (
  source TEXT NOT NULL,              -- prediction_data_sources.source_id
  day DATE NOT NULL,                 -- UTC
  user_id UUID REFERENCES auth.users(id) ON DELETE CASCADE,  -- NULL: every owner's feeds
  feeds INTEGER NOT NULL,            -- feeds of the source that existed during the day
  runs INTEGER NOT NULL,             -- feed runs started in the day (polls, backfills, pushes)
  failed_runs INTEGER NOT NULL,      -- runs that ended FAILED, TIMEOUT, RATE_LIMITED, AUTH_FAILED
  records_fetched BIGINT NOT NULL,   -- records the day's runs fetched or received
  records_rejected BIGINT NOT NULL,  -- records stage 2 rejected from them
  rejects_by_reason JSONB NOT NULL DEFAULT '{}',
  error_rate DECIMAL(5,4),           -- failed_runs / runs; NULL without runs
  latency_p50_ms INTEGER,            -- of the runs' duration_ms
  latency_p95_ms INTEGER,
  freshness_score SMALLINT CHECK (freshness_score BETWEEN 0 AND 100),      -- polled feeds only
  completeness_score SMALLINT CHECK (completeness_score BETWEEN 0 AND 100),
  health_score SMALLINT CHECK (health_score BETWEEN 0 AND 100),
  status TEXT CHECK (status IN ('healthy', 'degraded', 'unhealthy')),
  issues JSONB NOT NULL DEFAULT '[]',
  computed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX idx_source_health_daily_unique ON prediction_source_health_daily (
  source, day, COALESCE(user_id, '00000000-0000-0000-0000-000000000000')
);

ALTER TABLE prediction_source_health_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Source health: own feeds and the platform view" ON prediction_source_health_daily
  FOR SELECT
  USING (user_id IS NULL OR user_id = auth.uid());
GRANT SELECT ON prediction_source_health_daily TO predict_app;
