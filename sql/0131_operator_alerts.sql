-- 0131: operator alerts (predict_pipeline/alerts.py): one row per alert (a failed run, a feed
-- its breaker disabled, a stale feed), with when it was raised and sent, how often it was
-- raised inside its cooldown, and how its last delivery went. Pipeline state: no app privilege.
CREATE TABLE predict_meta.operator_alerts (
  kind TEXT NOT NULL CHECK (kind IN ('RUN_FAILED', 'FEED_AUTO_DISABLED', 'FEED_STALE')),
  subject TEXT NOT NULL,                 -- the run's or the feed's id
  title TEXT NOT NULL,
  summary TEXT NOT NULL,
  first_raised_at TIMESTAMPTZ NOT NULL,
  last_raised_at TIMESTAMPTZ NOT NULL,
  last_sent_at TIMESTAMPTZ,
  sends INTEGER NOT NULL DEFAULT 0,
  suppressed INTEGER NOT NULL DEFAULT 0,  -- raised again inside the cooldown, not sent
  last_status TEXT,                       -- COMPLETED, PARTIAL_FAILURE, FAILED, NOT_CONFIGURED
  last_error TEXT,
  PRIMARY KEY (kind, subject)
);
GRANT SELECT, INSERT, UPDATE ON predict_meta.operator_alerts TO predict_pipeline;
GRANT SELECT, DELETE ON predict_meta.operator_alerts TO predict_maintenance;
