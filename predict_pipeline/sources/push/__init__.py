"""Records users push to us: webhook deliveries and CSV/JSON file uploads.

By concern: `config` (the feed config and its schema), `fields` (one record from its fields),
`decode` (the rows of a CSV/JSON/JSON Lines body, with their places), `signature` (signed
webhook deliveries) and `delivery` (a delivery read into records and rejects).

Both share one normaliser (`normalise_fields`), which the custom JSON API adapter uses too, so
a field means the same thing whichever way a user's data arrives.

Accepted fields (CSV columns or JSON keys; `columns` in the feed config renames them):

- `source_event_id` (required): the user's id for the question; text or an integer.
- `value` (required as a CSV column): a number, scaled by `value_scale`. It may be empty for
  signals without a number (NEWS, SOCIAL, EXPERT, MANUAL) but not for MARKET_PRICE, VOLUME or
  SENTIMENT.
- `signal_type`: one of SIGNAL_TYPES (any case); the feed's `signal_type` when absent.
- `fetched_at`: when the value was observed, in `timestamp_format` (ISO-8601 by default); the
  time of receipt when absent. Naive ISO timestamps are refused unless the config names a
  `timezone`.
- `title`, `narrative`: text. `source_url`: an http(s) URL.
- `weight`: a number from 0 to 5. NormalisedRecord has no weight field, so the parsed weight
  travels in `raw_data["weight"]`.
- `close_time` (same format as `fetched_at`), `category` (one hint, or several separated by
  `;`; a list of strings in JSON), `status` (open, active, closed, resolved, settled,
  finalized, cancelled), `resolution` and `resolution_probability`: these fill MarketFacts.
- `resolution` takes each platform's own values (`RESOLUTION_VALUES`, any case): YES, NO,
  AMBIGUOUS, CANCELLED; Manifold's MKT (AMBIGUOUS, resolved to `resolution_probability`) and
  CANCEL; Kalshi's yes, no, void (CANCELLED) and scalar (AMBIGUOUS); Metaculus's annulled
  (CANCELLED) and ambiguous, and its earlier numbers -1 (ambiguous) and -2 (annulled); true and
  false; a final price or probability: 1 YES, 0 NO, anything between AMBIGUOUS resolved to it;
  Polymarket's final outcome prices as a list (or JSON-encoded list) with the Yes price first,
  `["1", "0"]`. A well-formed value that maps to none of them rejects its record alone
  (`unmappable_resolution`, `unmappable_status`), never the file.

Other columns or keys are kept in `raw_data`. Empty cells, JSON nulls and the strings listed in
`missing_values` count as absent.

Formats:

- CSV (`.csv`): UTF-8 (a BOM is fine), a header row, CRLF or LF, RFC 4180 quoting (quoted
  fields may hold commas and newlines). Blank rows are skipped; a row with a different number
  of cells than the header refuses the file.
- JSON (`.json`, and every webhook body): a list of record objects, `{"records": [...]}`, one
  record object, or JSON Lines (`.jsonl`, `.ndjson`: one object per line).

A malformed delivery is refused whole with an UploadError carrying the 1-based line and
column: for CSV the record's first line and the 1-based column index (plus the column name);
for JSON the line and character column of the offending value (or of the record's `{` when a
required key is missing). `column` is None only when the fault is not in one cell (a missing
column, an unterminated quote).

Webhooks to a feed with a secret must carry three headers (`verify_signature`, `sign_delivery`):
`X-Predict-Timestamp: <unix seconds>` (the time of sending, within SIGNATURE_TOLERANCE of the
receiver's clock), `X-Predict-Delivery: <id>` (the sender's id of the delivery, kept across
retries: 1-128 of `A-Z a-z 0-9 . _ : -`) and `X-Predict-Signature: sha256=<hex>` (the header name
is configurable), the HMAC-SHA256 under the feed's secret of `<timestamp>.<delivery id>.<raw body>`.
"""
