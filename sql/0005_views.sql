-- 0005: the three views of the spec.
-- security_invoker: without it a view runs with its owner's rights and would show
-- org-private events and other users' feeds through RLS to predict_app.

-- Active events with latest trust data
CREATE VIEW v_active_events WITH (security_invoker = true) AS
SELECT
  e.*,
  c.name as category_name,
  c.slug as category_slug,
  ts.overall_score as latest_trust_score,
  ts.manipulation_risk,
  ts.flagged_activity,
  (SELECT COUNT(*) FROM prediction_trust_flags f
   WHERE f.event_id = e.id AND f.severity IN ('ALERT', 'CRITICAL')
   AND f.reviewed = false) as active_alerts
FROM prediction_events e
LEFT JOIN prediction_categories c ON c.id = e.category_id
LEFT JOIN LATERAL (
  SELECT * FROM prediction_trust_scores
  WHERE event_id = e.id
  ORDER BY computed_at DESC LIMIT 1
) ts ON true
WHERE e.status = 'ACTIVE';

-- Calibration dashboard
CREATE VIEW v_calibration_dashboard WITH (security_invoker = true) AS
SELECT
  c.name as category,
  cs.time_window,
  cs.total_predictions,
  cs.resolved_predictions,
  cs.brier_score,
  cs.accuracy_at_70,
  cs.accuracy_at_90,
  cs.computed_at
FROM prediction_calibration_scores cs
LEFT JOIN prediction_categories c ON c.id = cs.category_id
ORDER BY cs.computed_at DESC;

-- Feed health overview
CREATE VIEW v_feed_health WITH (security_invoker = true) AS
SELECT
  f.id,
  f.name,
  ds.source_id,
  ds.name as source_name,
  f.enabled,
  f.poll_interval_minutes,
  f.consecutive_failures,
  f.last_successful_run,
  f.last_error,
  f.auth_status,
  f.signals_ingested_24h,
  f.avg_latency_ms,
  lr.status as last_run_status,
  lr.started_at as last_run_at,
  lr.signals_written as last_run_signals
FROM prediction_data_feeds f
JOIN prediction_data_sources ds ON ds.id = f.source_id
LEFT JOIN LATERAL (
  SELECT * FROM prediction_feed_runs
  WHERE feed_id = f.id
  ORDER BY started_at DESC LIMIT 1
) lr ON true;

-- Grant the views like the tables they read; RLS of those tables still applies to the invoker.
GRANT SELECT ON v_active_events, v_calibration_dashboard, v_feed_health
  TO predict_app, predict_readonly, predict_pipeline, predict_maintenance;
