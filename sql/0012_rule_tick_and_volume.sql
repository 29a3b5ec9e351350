-- 0012: indexes and bookkeeping of the set-based rule tick, and of lifetime volume totals.

-- One execution per rule, event and observed state: the tick inserts with ON CONFLICT DO
-- NOTHING against this, so two ticks over the same state can never both log a firing.
CREATE UNIQUE INDEX idx_executions_rule_event_state ON prediction_rule_executions
  (rule_id, event_id, (trigger_snapshot->>'state_key'))
  WHERE event_id IS NOT NULL AND trigger_snapshot ? 'state_key';

-- The daily cap counts a rule's executions since UTC midnight.
CREATE INDEX idx_executions_rule_started ON prediction_rule_executions(rule_id, started_at);

-- Each tick reads the flags raised since its cursor.
CREATE INDEX idx_flags_created ON prediction_trust_flags(created_at);

-- Which events a feed run wrote signals for, so the rule tick that first evaluates them can
-- credit the run with prediction_feed_runs.triggers_evaluated / triggers_fired.
CREATE TABLE predict_meta.feed_run_events (
  feed_run_id UUID NOT NULL REFERENCES prediction_feed_runs(id) ON DELETE CASCADE,
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,
  evaluated_at TIMESTAMPTZ,
  PRIMARY KEY (feed_run_id, event_id)
);
CREATE INDEX idx_feed_run_events_pending ON predict_meta.feed_run_events(event_id)
  WHERE evaluated_at IS NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON predict_meta.feed_run_events
  TO predict_pipeline, predict_maintenance;

-- Snapshots difference lifetime volume totals (a level, not a flow); this finds those few.
CREATE INDEX idx_signals_lifetime_volume ON prediction_signals (fetched_at)
  WHERE signal_type = 'VOLUME' AND raw_data->>'volume_scope' LIKE 'lifetime%';
