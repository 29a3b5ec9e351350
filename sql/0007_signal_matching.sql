-- 0007: what stage 2 (validated signals) needs beyond the spec's tables.

-- A market (source + source_event_id) once matched or resolved to an event stays matched;
-- event_id NULL means a reviewer discarded the market, so its records are not queued again.
CREATE TABLE predict_meta.market_links (
  source TEXT NOT NULL,
  source_event_id TEXT NOT NULL,
  event_id UUID REFERENCES prediction_events(id) ON DELETE CASCADE,
  method TEXT NOT NULL CHECK (method IN ('manual', 'similarity', 'review', 'created', 'discarded')),
  confidence DECIMAL(3,2) CHECK (confidence >= 0 AND confidence <= 1),
  linked_by UUID REFERENCES auth.users(id),
  linked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (source, source_event_id)
);
CREATE INDEX idx_market_links_event ON predict_meta.market_links(event_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON predict_meta.market_links
  TO predict_pipeline, predict_maintenance;

-- One pending review item per market and signal type: later polls refresh it instead of
-- flooding the queue (every value stays in the landing zone).
CREATE UNIQUE INDEX idx_unmatched_pending_market ON prediction_unmatched_signals
  (feed_id, source_event_id, signal_type) WHERE status = 'PENDING';
