-- 0081: the webhook and upload sources' config schema (one schema, predict_pipeline/feeds/
-- push.py CONFIG_SCHEMA) accepts a `resolution_probability` column: what a market resolved to
-- when it settled at neither 1 nor 0 (Manifold MKT, Kalshi scalar). tests/test_sources.py
-- keeps the seed equal to the registry.

UPDATE prediction_data_sources
SET config_schema = jsonb_set(
  config_schema,
  '{properties,columns,properties,resolution_probability}',
  '{"description": "Column or key that holds resolution_probability.", "type": "string", "minLength": 1}'::jsonb
)
WHERE source_id IN ('webhook', 'upload');
