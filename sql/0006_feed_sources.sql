-- 0006: the feed pipeline's built-in sources, and per-feed state the spec has no column for.

-- Incremental cursor of each feed between runs (pipeline-internal, so outside the spec's
-- public schema).
CREATE TABLE predict_meta.feed_state (
  feed_id UUID PRIMARY KEY REFERENCES prediction_data_feeds(id) ON DELETE CASCADE,
  cursor TEXT,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
GRANT USAGE ON SCHEMA predict_meta TO predict_pipeline, predict_maintenance;
GRANT SELECT, INSERT, UPDATE, DELETE ON predict_meta.feed_state
  TO predict_pipeline, predict_maintenance;

-- Built-in sources (predict_pipeline/feeds/registry.py; a test keeps the two equal). Each
-- config_schema is the JSON Schema a feed's config is validated against when it is loaded.

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'polymarket',
  'Polymarket',
  'prediction_market',
  'Polymarket Gamma markets/events and CLOB price history (USDC markets).',
  'built_in',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "description": "Which Polymarket markets to read. Explicit ids/slugs replace the listing.",
  "properties": {
    "active": {
      "description": "Gamma listing filter `active` in poll mode.",
      "type": "boolean"
    },
    "closed": {
      "description": "Gamma listing filter `closed` in poll mode.",
      "type": "boolean"
    },
    "event_slugs": {
      "description": "Gamma event slugs, each read via /events?slug=...; every nested market is its own question.",
      "items": {
        "minLength": 1,
        "type": "string"
      },
      "type": "array",
      "uniqueItems": true
    },
    "history_fidelity_minutes": {
      "description": "Backfill: minutes between CLOB price-history points (`fidelity`).",
      "maximum": 10080,
      "minimum": 1,
      "type": "integer"
    },
    "listing": {
      "description": "Endpoint that lists the market universe when no ids or slugs are configured: Gamma /markets (offset pages), Gamma /markets/keyset (cursor pages), Gamma /events (events with nested markets) or CLOB /markets (cursor pages).",
      "enum": [
        "markets",
        "markets_keyset",
        "events",
        "clob_markets"
      ]
    },
    "market_ids": {
      "description": "Gamma market ids (numeric strings), each read via /markets/{id}.",
      "items": {
        "pattern": "^[0-9]+$",
        "type": "string"
      },
      "type": "array",
      "uniqueItems": true
    },
    "market_slugs": {
      "description": "Gamma market slugs, each read via /markets/slug/{slug}.",
      "items": {
        "minLength": 1,
        "type": "string"
      },
      "type": "array",
      "uniqueItems": true
    },
    "page_size": {
      "description": "Gamma `limit` per page; keyset listings are capped at 100.",
      "maximum": 500,
      "minimum": 1,
      "type": "integer"
    },
    "tag_id": {
      "description": "Gamma tag id to restrict the listing to (null: every tag).",
      "minimum": 1,
      "type": [
        "integer",
        "null"
      ]
    }
  },
  "title": "Polymarket feed",
  "type": "object"
}$json$::jsonb,
  $json${
  "active": true,
  "closed": false,
  "event_slugs": [],
  "history_fidelity_minutes": 60,
  "listing": "markets",
  "market_ids": [],
  "market_slugs": [],
  "page_size": 100,
  "tag_id": null
}$json$::jsonb,
  true,
  false,
  true,
  1800,
  NULL,
  true
);

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'kalshi',
  'Kalshi',
  'prediction_market',
  'Kalshi trade API v2 markets and events; candlesticks from the live and historical tiers.',
  'built_in',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "properties": {
    "event_tickers": {
      "description": "Event tickers whose markets to follow, one GET /markets per event.",
      "items": {
        "minLength": 1,
        "type": "string"
      },
      "type": "array",
      "uniqueItems": true
    },
    "limit": {
      "description": "Markets per page of GET /markets (Kalshi allows 1 to 1000).",
      "maximum": 1000,
      "minimum": 1,
      "type": "integer"
    },
    "market_status": {
      "description": "Status filter for polled listings; none selects every status.",
      "enum": [
        "unopened",
        "open",
        "paused",
        "closed",
        "settled"
      ]
    },
    "period_interval": {
      "description": "Candlestick length in minutes for backfill: 1, 60 or 1440.",
      "enum": [
        1,
        60,
        1440
      ]
    },
    "series_ticker": {
      "description": "Series whose events (GET /events) and their markets to follow.",
      "minLength": 1,
      "type": "string"
    },
    "tickers": {
      "description": "Market tickers to follow (GET /markets?tickers=...).",
      "items": {
        "minLength": 1,
        "type": "string"
      },
      "type": "array",
      "uniqueItems": true
    }
  },
  "title": "Kalshi feed",
  "type": "object"
}$json$::jsonb,
  $json${
  "limit": 1000,
  "period_interval": 60
}$json$::jsonb,
  true,
  false,
  true,
  1200,
  NULL,
  true
);

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'manifold',
  'Manifold',
  'prediction_market',
  'Manifold Markets (play money) markets; history rebuilt from bets.',
  'built_in',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "properties": {
    "fetch_answers": {
      "description": "Follow a listed multiple-choice market to /market/{id} for answers.",
      "type": "boolean"
    },
    "limit": {
      "description": "Markets per page of GET /markets (Manifold allows 1 to 1000).",
      "maximum": 1000,
      "minimum": 1,
      "type": "integer"
    },
    "market_ids": {
      "description": "Market ids to follow (GET /market/{id}); none lists GET /markets.",
      "items": {
        "minLength": 1,
        "type": "string"
      },
      "type": "array",
      "uniqueItems": true
    },
    "max_pages": {
      "description": "Pages of GET /markets read per fetch (paged with before=<id>).",
      "minimum": 1,
      "type": "integer"
    },
    "sort": {
      "description": "Order of GET /markets (newest first by this time).",
      "enum": [
        "created-time",
        "updated-time",
        "last-bet-time",
        "last-comment-time"
      ]
    }
  },
  "title": "Manifold feed",
  "type": "object"
}$json$::jsonb,
  $json${
  "fetch_answers": true,
  "limit": 500,
  "max_pages": 1
}$json$::jsonb,
  true,
  false,
  true,
  500,
  NULL,
  true
);

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'metaculus',
  'Metaculus',
  'prediction_market',
  'Metaculus community predictions (recency-weighted aggregation) and history.',
  'built_in',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "properties": {
    "credentials": {
      "additionalProperties": false,
      "description": "Run-time secret from the feed's encrypted credentials; not stored.",
      "properties": {
        "token": {
          "description": "Metaculus API token, sent as 'Authorization: Token <token>'.",
          "minLength": 1,
          "type": "string"
        }
      },
      "required": [
        "token"
      ],
      "type": "object"
    },
    "forecast_types": {
      "description": "Question types listed by GET /posts/ (the forecast_type filter).",
      "items": {
        "enum": [
          "binary",
          "multiple_choice",
          "numeric",
          "discrete",
          "date",
          "conditional",
          "group_of_questions"
        ]
      },
      "minItems": 1,
      "type": "array",
      "uniqueItems": true
    },
    "limit": {
      "description": "Posts per page of GET /posts/ (1 to 100).",
      "maximum": 100,
      "minimum": 1,
      "type": "integer"
    },
    "max_pages": {
      "description": "Pages of GET /posts/ read per fetch (following 'next').",
      "minimum": 1,
      "type": "integer"
    },
    "order_by": {
      "description": "Ordering of GET /posts/, e.g. '-hotness' or '-published_at'.",
      "minLength": 1,
      "type": "string"
    },
    "post_ids": {
      "description": "Posts to follow (GET /posts/{id}/); none lists GET /posts/.",
      "items": {
        "minimum": 1,
        "type": "integer"
      },
      "type": "array",
      "uniqueItems": true
    },
    "statuses": {
      "description": "Post statuses listed by GET /posts/.",
      "items": {
        "enum": [
          "upcoming",
          "open",
          "closed",
          "resolved"
        ]
      },
      "minItems": 1,
      "type": "array",
      "uniqueItems": true
    },
    "tournaments": {
      "description": "Tournament ids or slugs to restrict GET /posts/ to.",
      "items": {
        "type": [
          "string",
          "integer"
        ]
      },
      "type": "array",
      "uniqueItems": true
    }
  },
  "title": "Metaculus feed",
  "type": "object"
}$json$::jsonb,
  $json${
  "forecast_types": [
    "binary",
    "multiple_choice"
  ],
  "limit": 100,
  "max_pages": 5,
  "order_by": "-hotness",
  "statuses": [
    "open"
  ]
}$json$::jsonb,
  true,
  false,
  true,
  16,
  24000,
  true
);

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'predictit',
  'PredictIt',
  'prediction_market',
  'PredictIt market data snapshot of all markets (no history API).',
  'built_in',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "description": "Reads the PredictIt all-markets snapshot.",
  "properties": {
    "market_ids": {
      "description": "PredictIt market ids to keep from the snapshot (empty: all markets).",
      "items": {
        "minimum": 1,
        "type": "integer"
      },
      "type": "array",
      "uniqueItems": true
    }
  },
  "title": "PredictIt feed",
  "type": "object"
}$json$::jsonb,
  $json${
  "market_ids": []
}$json$::jsonb,
  true,
  false,
  false,
  6,
  NULL,
  true
);

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'custom_api',
  'Custom JSON API',
  'custom',
  'A user''s JSON API: URL, method, headers, field mapping and pagination.',
  'custom_api',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "dependentRequired": {
    "window_end_param": [
      "window_start_param"
    ],
    "window_start_param": [
      "window_end_param"
    ]
  },
  "description": "A JSON API the user describes: request, where the items are, their fields.",
  "examples": [
    {
      "fields": {
        "close_time": "dateEnd",
        "source_event_id": "id",
        "status": "status",
        "title": "name",
        "value": "lastTradePrice"
      },
      "headers": {},
      "method": "GET",
      "missing_values": [
        "NA"
      ],
      "pagination": {
        "max_pages": 1,
        "mode": "none"
      },
      "params": {},
      "records_path": "$.markets[*].contracts[*]",
      "signal_type": "MARKET_PRICE",
      "timestamp_format": "iso",
      "timezone": "America/New_York",
      "url": "https://www.predictit.org/api/marketdata/all/",
      "value_scale": 1
    }
  ],
  "properties": {
    "body": {
      "description": "JSON body sent with a POST request."
    },
    "fields": {
      "additionalProperties": false,
      "description": "Field path of each record field, relative to one item.",
      "properties": {
        "category": {
          "description": "Path to category hints (text with ';' separators, or a list of text).",
          "minLength": 1,
          "type": "string"
        },
        "close_time": {
          "description": "Path to when the question closes.",
          "minLength": 1,
          "type": "string"
        },
        "fetched_at": {
          "description": "Path to when the value was observed; the fetch time when not mapped.",
          "minLength": 1,
          "type": "string"
        },
        "narrative": {
          "description": "Path to free text kept with the signal.",
          "minLength": 1,
          "type": "string"
        },
        "resolution": {
          "description": "Path to YES / NO / AMBIGUOUS / CANCELLED once settled.",
          "minLength": 1,
          "type": "string"
        },
        "source_event_id": {
          "description": "Path to the item's id at the source (required).",
          "minLength": 1,
          "type": "string"
        },
        "source_url": {
          "description": "Path to a link to the item.",
          "minLength": 1,
          "type": "string"
        },
        "status": {
          "description": "Path to open / closed / resolved / cancelled (and common synonyms).",
          "minLength": 1,
          "type": "string"
        },
        "title": {
          "description": "Path to the question's title.",
          "minLength": 1,
          "type": "string"
        },
        "value": {
          "description": "Path to the item's number (a price, a count).",
          "minLength": 1,
          "type": "string"
        }
      },
      "required": [
        "source_event_id"
      ],
      "type": "object"
    },
    "headers": {
      "additionalProperties": {
        "type": "string"
      },
      "description": "Request headers (store credentials in the feed's encrypted credentials, not here).",
      "type": "object"
    },
    "method": {
      "description": "HTTP method.",
      "enum": [
        "GET",
        "POST"
      ]
    },
    "missing_values": {
      "description": "Text values that mean 'no value' (e.g. \"NA\"), besides empty and null.",
      "items": {
        "type": "string"
      },
      "type": "array"
    },
    "pagination": {
      "description": "How further pages are requested.",
      "oneOf": [
        {
          "additionalProperties": false,
          "description": "A single request.",
          "properties": {
            "max_pages": {
              "description": "Stop after this many pages (default 20).",
              "minimum": 1,
              "type": "integer"
            },
            "mode": {
              "const": "none",
              "description": "Pagination mode."
            }
          },
          "required": [
            "mode"
          ],
          "type": "object"
        },
        {
          "additionalProperties": false,
          "description": "limit/offset query parameters.",
          "properties": {
            "limit_param": {
              "description": "Query parameter for the page size.",
              "minLength": 1,
              "type": "string"
            },
            "max_pages": {
              "description": "Stop after this many pages (default 20).",
              "minimum": 1,
              "type": "integer"
            },
            "mode": {
              "const": "offset",
              "description": "Pagination mode."
            },
            "offset_param": {
              "description": "Query parameter for the offset.",
              "minLength": 1,
              "type": "string"
            },
            "page_size": {
              "description": "Items asked for per page.",
              "minimum": 1,
              "type": "integer"
            }
          },
          "required": [
            "mode",
            "limit_param",
            "offset_param",
            "page_size"
          ],
          "type": "object"
        },
        {
          "additionalProperties": false,
          "description": "A page-number query parameter.",
          "properties": {
            "limit_param": {
              "description": "Query parameter for the page size.",
              "minLength": 1,
              "type": "string"
            },
            "max_pages": {
              "description": "Stop after this many pages (default 20).",
              "minimum": 1,
              "type": "integer"
            },
            "mode": {
              "const": "page",
              "description": "Pagination mode."
            },
            "page_param": {
              "description": "Query parameter for the page number.",
              "minLength": 1,
              "type": "string"
            },
            "page_size": {
              "description": "Items asked for per page.",
              "minimum": 1,
              "type": "integer"
            },
            "start": {
              "description": "Number of the first page (default 1).",
              "minimum": 0,
              "type": "integer"
            }
          },
          "required": [
            "mode",
            "page_param"
          ],
          "type": "object"
        },
        {
          "additionalProperties": false,
          "description": "A cursor read from each response and sent back.",
          "properties": {
            "cursor_param": {
              "description": "Query parameter that carries the cursor.",
              "minLength": 1,
              "type": "string"
            },
            "cursor_path": {
              "description": "Field path of the next cursor in the response.",
              "minLength": 1,
              "type": "string"
            },
            "max_pages": {
              "description": "Stop after this many pages (default 20).",
              "minimum": 1,
              "type": "integer"
            },
            "mode": {
              "const": "cursor",
              "description": "Pagination mode."
            }
          },
          "required": [
            "mode",
            "cursor_path",
            "cursor_param"
          ],
          "type": "object"
        },
        {
          "additionalProperties": false,
          "description": "A next-page URL read from each response.",
          "properties": {
            "max_pages": {
              "description": "Stop after this many pages (default 20).",
              "minimum": 1,
              "type": "integer"
            },
            "mode": {
              "const": "next_url",
              "description": "Pagination mode."
            },
            "next_url_path": {
              "description": "Field path of the next page's URL.",
              "minLength": 1,
              "type": "string"
            }
          },
          "required": [
            "mode",
            "next_url_path"
          ],
          "type": "object"
        }
      ]
    },
    "params": {
      "additionalProperties": {
        "type": "string"
      },
      "description": "Query parameters sent with every request.",
      "type": "object"
    },
    "records_path": {
      "description": "Field path to the items, e.g. $.data or $.markets[*].contracts[*].",
      "minLength": 1,
      "type": "string"
    },
    "signal_type": {
      "description": "Signal type of records that do not name their own.",
      "enum": [
        "MARKET_PRICE",
        "SENTIMENT",
        "VOLUME",
        "NEWS",
        "SOCIAL",
        "EXPERT",
        "MANUAL"
      ]
    },
    "timestamp_format": {
      "description": "How timestamps are written: ISO-8601 text, epoch seconds or epoch ms.",
      "enum": [
        "iso",
        "epoch_s",
        "epoch_ms"
      ]
    },
    "timezone": {
      "description": "IANA zone for ISO timestamps without an offset; without it they are refused.",
      "minLength": 1,
      "type": "string"
    },
    "url": {
      "description": "The API's http(s) URL.",
      "pattern": "^https?://[^\\s/?#]+",
      "type": "string"
    },
    "value_scale": {
      "description": "Factor applied to every value (0.01 turns cents into dollars).",
      "exclusiveMinimum": 0,
      "type": "number"
    },
    "window_end_param": {
      "description": "Query parameter for a backfill window's end.",
      "minLength": 1,
      "type": "string"
    },
    "window_format": {
      "description": "How the backfill window is written in the query.",
      "enum": [
        "iso",
        "epoch_s",
        "epoch_ms"
      ]
    },
    "window_start_param": {
      "description": "Query parameter for a backfill window's start.",
      "minLength": 1,
      "type": "string"
    }
  },
  "required": [
    "url",
    "records_path",
    "fields"
  ],
  "title": "Custom JSON API feed",
  "type": "object"
}$json$::jsonb,
  $json${
  "headers": {},
  "method": "GET",
  "missing_values": [],
  "pagination": {
    "mode": "none"
  },
  "params": {},
  "signal_type": "MARKET_PRICE",
  "timestamp_format": "iso",
  "value_scale": 1,
  "window_format": "iso"
}$json$::jsonb,
  true,
  false,
  true,
  60,
  NULL,
  true
);

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'webhook',
  'Webhook push',
  'custom',
  'Signals pushed to the platform as signed JSON deliveries.',
  'webhook',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "description": "How pushed records (webhook bodies, CSV/JSON uploads) are read.",
  "properties": {
    "columns": {
      "additionalProperties": false,
      "description": "Renames: accepted field name -> the column or key used in the data.",
      "properties": {
        "category": {
          "description": "Column or key that holds category.",
          "minLength": 1,
          "type": "string"
        },
        "close_time": {
          "description": "Column or key that holds close_time.",
          "minLength": 1,
          "type": "string"
        },
        "fetched_at": {
          "description": "Column or key that holds fetched_at.",
          "minLength": 1,
          "type": "string"
        },
        "narrative": {
          "description": "Column or key that holds narrative.",
          "minLength": 1,
          "type": "string"
        },
        "resolution": {
          "description": "Column or key that holds resolution.",
          "minLength": 1,
          "type": "string"
        },
        "signal_type": {
          "description": "Column or key that holds signal_type.",
          "minLength": 1,
          "type": "string"
        },
        "source_event_id": {
          "description": "Column or key that holds source_event_id.",
          "minLength": 1,
          "type": "string"
        },
        "source_url": {
          "description": "Column or key that holds source_url.",
          "minLength": 1,
          "type": "string"
        },
        "status": {
          "description": "Column or key that holds status.",
          "minLength": 1,
          "type": "string"
        },
        "title": {
          "description": "Column or key that holds title.",
          "minLength": 1,
          "type": "string"
        },
        "value": {
          "description": "Column or key that holds value.",
          "minLength": 1,
          "type": "string"
        },
        "weight": {
          "description": "Column or key that holds weight.",
          "minLength": 1,
          "type": "string"
        }
      },
      "type": "object"
    },
    "missing_values": {
      "description": "Text values that mean 'no value' (e.g. \"NA\"), besides empty and null.",
      "items": {
        "type": "string"
      },
      "type": "array"
    },
    "signal_type": {
      "description": "Signal type of records that do not name their own.",
      "enum": [
        "MARKET_PRICE",
        "SENTIMENT",
        "VOLUME",
        "NEWS",
        "SOCIAL",
        "EXPERT",
        "MANUAL"
      ]
    },
    "signature_header": {
      "description": "Webhook header carrying 'sha256=<hex>' HMAC-SHA256 of the body.",
      "pattern": "^[A-Za-z0-9-]+$",
      "type": "string"
    },
    "timestamp_format": {
      "description": "How timestamps are written: ISO-8601 text, epoch seconds or epoch ms.",
      "enum": [
        "iso",
        "epoch_s",
        "epoch_ms"
      ]
    },
    "timezone": {
      "description": "IANA zone for ISO timestamps without an offset; without it they are refused.",
      "minLength": 1,
      "type": "string"
    },
    "value_scale": {
      "description": "Factor applied to every value (0.01 turns cents into dollars).",
      "exclusiveMinimum": 0,
      "type": "number"
    }
  },
  "title": "Webhook / upload feed",
  "type": "object"
}$json$::jsonb,
  $json${
  "columns": {},
  "missing_values": [],
  "signal_type": "MARKET_PRICE",
  "signature_header": "X-Predict-Signature",
  "timestamp_format": "iso",
  "value_scale": 1
}$json$::jsonb,
  false,
  true,
  false,
  NULL,
  NULL,
  true
);

INSERT INTO prediction_data_sources (source_id, name, category, description, adapter_type, config_schema, default_config, supports_pull, supports_push, supports_backfill, rate_limit_rpm, rate_limit_rpd, is_system)
VALUES (
  'upload',
  'File upload',
  'custom',
  'Signals uploaded as a CSV, JSON or JSON Lines file.',
  'upload',
  $json${
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "additionalProperties": false,
  "description": "How pushed records (webhook bodies, CSV/JSON uploads) are read.",
  "properties": {
    "columns": {
      "additionalProperties": false,
      "description": "Renames: accepted field name -> the column or key used in the data.",
      "properties": {
        "category": {
          "description": "Column or key that holds category.",
          "minLength": 1,
          "type": "string"
        },
        "close_time": {
          "description": "Column or key that holds close_time.",
          "minLength": 1,
          "type": "string"
        },
        "fetched_at": {
          "description": "Column or key that holds fetched_at.",
          "minLength": 1,
          "type": "string"
        },
        "narrative": {
          "description": "Column or key that holds narrative.",
          "minLength": 1,
          "type": "string"
        },
        "resolution": {
          "description": "Column or key that holds resolution.",
          "minLength": 1,
          "type": "string"
        },
        "signal_type": {
          "description": "Column or key that holds signal_type.",
          "minLength": 1,
          "type": "string"
        },
        "source_event_id": {
          "description": "Column or key that holds source_event_id.",
          "minLength": 1,
          "type": "string"
        },
        "source_url": {
          "description": "Column or key that holds source_url.",
          "minLength": 1,
          "type": "string"
        },
        "status": {
          "description": "Column or key that holds status.",
          "minLength": 1,
          "type": "string"
        },
        "title": {
          "description": "Column or key that holds title.",
          "minLength": 1,
          "type": "string"
        },
        "value": {
          "description": "Column or key that holds value.",
          "minLength": 1,
          "type": "string"
        },
        "weight": {
          "description": "Column or key that holds weight.",
          "minLength": 1,
          "type": "string"
        }
      },
      "type": "object"
    },
    "missing_values": {
      "description": "Text values that mean 'no value' (e.g. \"NA\"), besides empty and null.",
      "items": {
        "type": "string"
      },
      "type": "array"
    },
    "signal_type": {
      "description": "Signal type of records that do not name their own.",
      "enum": [
        "MARKET_PRICE",
        "SENTIMENT",
        "VOLUME",
        "NEWS",
        "SOCIAL",
        "EXPERT",
        "MANUAL"
      ]
    },
    "signature_header": {
      "description": "Webhook header carrying 'sha256=<hex>' HMAC-SHA256 of the body.",
      "pattern": "^[A-Za-z0-9-]+$",
      "type": "string"
    },
    "timestamp_format": {
      "description": "How timestamps are written: ISO-8601 text, epoch seconds or epoch ms.",
      "enum": [
        "iso",
        "epoch_s",
        "epoch_ms"
      ]
    },
    "timezone": {
      "description": "IANA zone for ISO timestamps without an offset; without it they are refused.",
      "minLength": 1,
      "type": "string"
    },
    "value_scale": {
      "description": "Factor applied to every value (0.01 turns cents into dollars).",
      "exclusiveMinimum": 0,
      "type": "number"
    }
  },
  "title": "Webhook / upload feed",
  "type": "object"
}$json$::jsonb,
  $json${
  "columns": {},
  "missing_values": [],
  "signal_type": "MARKET_PRICE",
  "signature_header": "X-Predict-Signature",
  "timestamp_format": "iso",
  "value_scale": 1
}$json$::jsonb,
  false,
  true,
  false,
  NULL,
  NULL,
  true
);

