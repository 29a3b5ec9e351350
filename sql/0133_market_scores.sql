-- 0133: prediction_market_scores, an extension table, and v_market_scores: every scored series of
-- a resolved event (each linked market, and `pooled`, the platform's own forecast) read at each
-- horizon. The table keeps what was read (the probability and the moment it was read at); the
-- view scores it against the resolution's current outcome, so an overturned dispute rescores
-- without a rewrite. Each horizon's probability is defined once, in
-- predict_pipeline/calibration/market_scores.py and the README's "Scores" section. Written by
-- event_resolutions in the statement that scores the resolution; read with their event.
CREATE TABLE prediction_market_scores (
  resolution_id UUID NOT NULL REFERENCES prediction_resolutions(id) ON DELETE CASCADE,
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,
  source TEXT NOT NULL,               -- the market's source, or 'pooled'
  source_event_id TEXT,               -- the market's id at its source; NULL for pooled
  horizon TEXT NOT NULL
    CHECK (horizon IN ('CLOSE', 'MIDPOINT', 'TIME_AVERAGE', '12H', '1D', '7D', '30D')),
  probability DOUBLE PRECISION NOT NULL CHECK (probability >= 0 AND probability <= 1),
  observed_at TIMESTAMPTZ,            -- the observation read; TIME_AVERAGE: the moment it ends
  scored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK ((source = 'pooled') = (source_event_id IS NULL))
);
CREATE UNIQUE INDEX idx_market_scores_unique ON prediction_market_scores (
  resolution_id, source, COALESCE(source_event_id, ''), horizon
);
CREATE INDEX idx_market_scores_event ON prediction_market_scores (event_id);

ALTER TABLE prediction_market_scores ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Market scores follow their event" ON prediction_market_scores FOR SELECT
  USING (EXISTS (SELECT 1 FROM prediction_events e WHERE e.id = prediction_market_scores.event_id));
GRANT SELECT ON prediction_market_scores TO predict_app;

-- One row per resolved YES/NO event × scored series × horizon. log_score is ln of the
-- probability given to what happened, clipped to [0.0001, 0.9999] as calibration clips it (≤ 0,
-- 0 is best). relative_brier is the series' Brier minus pooled's for the same event and horizon
-- (negative: the market beat the pooled forecast); NULL where pooled has no probability.
CREATE VIEW v_market_scores WITH (security_invoker = true) AS
WITH scored AS (
  SELECT ms.event_id, ms.source, ms.source_event_id, ms.horizon, ms.probability,
         ms.observed_at, (r.outcome = 'YES')::int AS outcome,
         power(ms.probability - (r.outcome = 'YES')::int, 2) AS brier_score,
         ln(CASE WHEN r.outcome = 'YES' THEN least(greatest(ms.probability, 0.0001), 0.9999)
                 ELSE 1 - least(greatest(ms.probability, 0.0001), 0.9999) END) AS log_score
  FROM prediction_market_scores ms
  JOIN prediction_resolutions r ON r.id = ms.resolution_id
  WHERE r.outcome IN ('YES', 'NO')
)
SELECT s.event_id, s.source, s.source_event_id, s.horizon, s.probability, s.outcome,
       s.brier_score, s.log_score,
       s.brier_score - max(s.brier_score) FILTER (WHERE s.source = 'pooled')
         OVER (PARTITION BY s.event_id, s.horizon) AS relative_brier,
       s.observed_at
FROM scored s;
GRANT SELECT ON v_market_scores TO predict_app;
