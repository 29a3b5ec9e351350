-- 0008: what each market said about its own outcome, for resolving events from settled markets.

-- The latest settlement facts seen for a market (upserted by validated_signals); the
-- event_resolutions asset resolves an event when its linked markets agree.
CREATE TABLE predict_meta.market_settlements (
  source TEXT NOT NULL,
  source_event_id TEXT NOT NULL,
  event_id UUID REFERENCES prediction_events(id) ON DELETE CASCADE,
  resolution TEXT NOT NULL CHECK (resolution IN ('YES', 'NO', 'AMBIGUOUS', 'CANCELLED')),
  resolved_at TIMESTAMPTZ,
  last_price DECIMAL(5,4),
  source_url TEXT,
  observed_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (source, source_event_id)
);
CREATE INDEX idx_market_settlements_event ON predict_meta.market_settlements(event_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON predict_meta.market_settlements
  TO predict_pipeline, predict_maintenance;
