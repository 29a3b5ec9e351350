-- 0030: webhook deliveries already landed, by the sender's delivery id (X-Predict-Delivery), so
-- a retried or replayed delivery is answered without landing it twice
-- (predict_pipeline/ingestion/pushed.py land_webhook).
--
-- A row is inserted in the transaction that lands the delivery and commits with its feed run;
-- a concurrent delivery of the same id waits on the primary key and then finds it.
-- Retention: a row lives as long as its feed run (ON DELETE CASCADE: the retention job keeps
-- feed runs 90 days), far beyond the 5-minute signature tolerance after which a replay is
-- refused by its timestamp anyway.

CREATE TABLE prediction_webhook_deliveries (
  feed_id UUID NOT NULL REFERENCES prediction_data_feeds(id) ON DELETE CASCADE,
  delivery_id TEXT NOT NULL CHECK (delivery_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
  -- Set in the same transaction as the insert; NULL never commits.
  feed_run_id UUID REFERENCES prediction_feed_runs(id) ON DELETE CASCADE,
  sent_at TIMESTAMPTZ NOT NULL,
  received_at TIMESTAMPTZ NOT NULL,
  body_sha256 TEXT NOT NULL,
  PRIMARY KEY (feed_id, delivery_id)
);

CREATE INDEX idx_webhook_deliveries_run ON prediction_webhook_deliveries(feed_run_id);

-- Pipeline-internal: the pipeline role bypasses RLS; user-facing roles see nothing.
ALTER TABLE prediction_webhook_deliveries ENABLE ROW LEVEL SECURITY;
