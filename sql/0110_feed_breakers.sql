-- 0110: breakers that heal, pauses, and skips. Extensions of the spec, listed in the README
-- ("Feed breakers, pauses and quotas").
--
-- paused_at: a feed its owner paused (`feeds pause`) keeps enabled, schedule, cursor and health
--   but is not polled until `feeds resume`; a disabled feed is off until `feeds enable`.
-- breaker_probe_at: when an auto-disabled feed (auto_disabled_at set) is next probed (the
--   half-open state of its breaker): one poll that re-enables it on success; a failed probe
--   doubles the cool-off (breaker_failed_probes counts them). NULL for a feed disabled by hand.
ALTER TABLE prediction_data_feeds
  ADD COLUMN paused_at TIMESTAMPTZ,
  ADD COLUMN breaker_probe_at TIMESTAMPTZ,
  ADD COLUMN breaker_failed_probes INTEGER NOT NULL DEFAULT 0
    CHECK (breaker_failed_probes >= 0);

CREATE INDEX idx_feeds_breaker_probe ON prediction_data_feeds(breaker_probe_at)
  WHERE NOT enabled AND breaker_probe_at IS NOT NULL;

-- SKIPPED: a fetch that did not happen for a reason that is no fault of the feed (replay mode
-- without a recording of its history); it never counts toward auto-disabling.
ALTER TABLE prediction_feed_runs DROP CONSTRAINT prediction_feed_runs_status_check;
ALTER TABLE prediction_feed_runs ADD CONSTRAINT prediction_feed_runs_status_check
  CHECK (status IN ('RUNNING', 'SUCCESS', 'PARTIAL', 'FAILED', 'TIMEOUT', 'RATE_LIMITED',
                    'AUTH_FAILED', 'SKIPPED'));

