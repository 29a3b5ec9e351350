-- 0134: prediction_source_calibration, an extension table: calibration of every scored series
-- (each market source, and 'pooled', the platform's own forecast) per category (and a global
-- row, category_id NULL) × window (7D/30D/90D/ALL_TIME) × horizon (v_market_scores' horizons),
-- over v_market_scores. Scores are defined once, in predict_pipeline/calibration/metrics.py
-- (Brier, log score, accuracy at 50/70/90 %, ten bins); predict_pipeline/calibration/
-- source_calibration.py documents the filters. Written by the source_calibration asset.
-- Exposure follows prediction_calibration_scores (sql/0040_tenancy.sql): a row aggregates many
-- events and names no event, market or user, so everyone may read it and only the pipeline
-- writes it.
CREATE TABLE prediction_source_calibration (
  source TEXT NOT NULL,                -- the market's source, or 'pooled'
  category_id UUID REFERENCES prediction_categories(id) ON DELETE CASCADE,  -- NULL: global
  time_window TEXT NOT NULL CHECK (time_window IN ('7D', '30D', '90D', 'ALL_TIME')),
  horizon TEXT NOT NULL
    CHECK (horizon IN ('CLOSE', 'MIDPOINT', 'TIME_AVERAGE', '12H', '1D', '7D', '30D')),
  total_predictions INTEGER NOT NULL,  -- scored series in scope (one per market, or pooled)
  resolved_predictions INTEGER NOT NULL,
  brier_score DECIMAL(6,4),
  log_score DECIMAL(8,4),
  accuracy_at_50 DECIMAL(5,4),
  accuracy_at_70 DECIMAL(5,4),
  accuracy_at_90 DECIMAL(5,4),
  calibration_curve JSONB NOT NULL,    -- {"bins": [10 bins]} as metrics.py builds them
  min_volume DOUBLE PRECISION NOT NULL DEFAULT 0,   -- the filters the row was computed with
  min_traders INTEGER NOT NULL DEFAULT 0,
  min_trust DOUBLE PRECISION NOT NULL DEFAULT 0,
  computed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX idx_source_calibration_unique ON prediction_source_calibration (
  source, COALESCE(category_id, '00000000-0000-0000-0000-000000000000'), time_window, horizon
);

ALTER TABLE prediction_source_calibration ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Source calibration: aggregates readable by everyone" ON prediction_source_calibration
  FOR SELECT USING (true);
GRANT SELECT ON prediction_source_calibration TO predict_app;
