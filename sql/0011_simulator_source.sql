-- 0011: the market simulator, a built-in sandbox source (predict_pipeline/feeds/simulator.py;
-- generated from predict_pipeline/feeds/registry.py, and tests/test_sources.py keeps the two
-- equal). It generates its data from a seed: no network, no credentials.

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'simulator',
  'Market simulator',
  'alternative',
  'A deterministic, seeded sandbox of simulated markets (three venues, volume, sentiment, posts, news, injected anomalies and settlements); no network.',
  'built_in',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "description": "A deterministic sandbox: seeded events with price paths, volume, sentiment, posts, news, injected anomalies and settlements (no network).",
  "properties": {
    "anomalies": {
      "description": "Inject the anomalies.",
      "type": "boolean"
    },
    "categories": {
      "description": "Category slugs the events are spread over, in turn.",
      "items": {
        "enum": [
          "geopolitics",
          "technology",
          "finance",
          "sports",
          "entertainment",
          "marketing"
        ]
      },
      "minItems": 1,
      "type": "array",
      "uniqueItems": true
    },
    "events_per_day": {
      "description": "New events opened per day (open events = this x mean lifetime).",
      "maximum": 1440,
      "minimum": 1,
      "type": "integer"
    },
    "max_lifetime_hours": {
      "maximum": 720,
      "minimum": 1,
      "type": "integer"
    },
    "min_lifetime_hours": {
      "maximum": 720,
      "minimum": 1,
      "type": "integer"
    },
    "seed": {
      "description": "Seed of the simulated world: same seed, same markets.",
      "maximum": 2147483647,
      "minimum": 0,
      "type": "integer"
    }
  },
  "title": "Market simulator feed",
  "type": "object"
}$json$,
  $json${
  "anomalies": true,
  "categories": [
    "geopolitics",
    "technology",
    "finance",
    "sports",
    "entertainment"
  ],
  "events_per_day": 120,
  "max_lifetime_hours": 60,
  "min_lifetime_hours": 24,
  "seed": 7
}$json$,
  true,
  false,
  true,
  NULL,
  NULL,
  true
);
