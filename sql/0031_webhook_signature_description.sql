-- 0031: the signature header's description in the webhook and upload sources' config schema
-- (one schema, predict_pipeline/feeds/push.py CONFIG_SCHEMA) now says what is signed: the
-- timestamp and delivery id with the body. tests/test_sources.py keeps the seed equal to it.

UPDATE prediction_data_sources
SET config_schema = jsonb_set(
  config_schema,
  '{properties,signature_header,description}',
  to_jsonb('Webhook header carrying ''sha256=<hex>'': the HMAC-SHA256 of ''<X-Predict-Timestamp>.<X-Predict-Delivery>.<body>''.'::text)
)
WHERE source_id IN ('webhook', 'upload');
