-- 0051: a user-defined source's market ids belong to their feed; a market link to its user.
--
-- Before: upload, webhook and custom_api records were keyed by source name and market id alone,
-- across tenants, so the dedup index dropped B's value as a duplicate of A's, and the one saved
-- link per (source, market id) routed B's records into A's event, or discarded them because A
-- had discarded that id. A link of a platform market (polymarket, kalshi, ...) to A's private
-- event was followed by B's feeds of that market too.
--
-- 1. Namespace. Stage 2 stores the market id of a user-defined source (adapter_type custom_api,
--    webhook, upload) as 'feed:<feed id>:<id as sent>' (predict_pipeline/signals/linking.py),
--    so the dedup index (idx_signals_dedup_*), the review queue, the settlements and the links
--    see one feed's markets only. Platform sources keep the id as sent: the same market is the
--    same fact for every tenant, and its values are deduplicated globally.
-- 2. Links are a user's decisions: predict_meta.market_links is keyed by source, user and
--    market id. A feed follows its owner's links only, and only into events its owner can see
--    (predict_sees_event); a discard stops its owner's records only.
-- Rows written before this migration are brought into that shape below.

CREATE TEMP TABLE user_defined_feeds ON COMMIT DROP AS
  SELECT f.id FROM prediction_data_feeds f
  JOIN prediction_data_sources s ON s.id = f.source_id
  WHERE s.adapter_type <> 'built_in';

ALTER TABLE predict_meta.market_links RENAME TO market_links_shared;
ALTER TABLE predict_meta.market_links_shared
  RENAME CONSTRAINT market_links_pkey TO market_links_shared_pkey;
ALTER INDEX predict_meta.idx_market_links_event RENAME TO idx_market_links_shared_event;

CREATE TABLE predict_meta.market_links (
  source TEXT NOT NULL,
  user_id UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,  -- whose decision it is
  source_event_id TEXT NOT NULL,
  event_id UUID REFERENCES prediction_events(id) ON DELETE CASCADE,
  method TEXT NOT NULL CHECK (method IN ('manual', 'similarity', 'review', 'created', 'discarded')),
  confidence DECIMAL(3,2) CHECK (confidence >= 0 AND confidence <= 1),
  linked_by UUID REFERENCES auth.users(id),
  linked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (source, user_id, source_event_id)
);
CREATE INDEX idx_market_links_event ON predict_meta.market_links(event_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON predict_meta.market_links
  TO predict_pipeline, predict_maintenance;

-- A shared link becomes the link of each user whose feed followed it: its signals of the market
-- landed in the linked event, or its review items of the market were resolved to it (discarded,
-- for a discard). Kept only where that user can see the event.
INSERT INTO predict_meta.market_links
  (source, user_id, source_event_id, event_id, method, confidence, linked_by, linked_at)
SELECT DISTINCT l.source, f.user_id,
       CASE WHEN uf.id IS NULL THEN l.source_event_id
            ELSE 'feed:' || f.id::text || ':' || l.source_event_id END,
       l.event_id, l.method, l.confidence, l.linked_by, l.linked_at
FROM predict_meta.market_links_shared l
CROSS JOIN LATERAL (
  SELECT s.feed_id FROM prediction_signals s
  WHERE s.source = l.source AND s.source_event_id = l.source_event_id
    AND s.event_id = l.event_id AND s.feed_id IS NOT NULL
  UNION
  SELECT u.feed_id FROM prediction_unmatched_signals u
  WHERE u.source_event_id = l.source_event_id AND u.raw_data->>'source' = l.source
    AND u.status <> 'PENDING' AND u.resolved_event_id IS NOT DISTINCT FROM l.event_id
) followed
JOIN prediction_data_feeds f ON f.id = followed.feed_id
LEFT JOIN user_defined_feeds uf ON uf.id = f.id
LEFT JOIN prediction_events e ON e.id = l.event_id
WHERE l.event_id IS NULL
   OR predict_sees_event(f.user_id, predict_user_orgs(f.user_id), e.is_public, e.org_id,
                         e.created_by)
ON CONFLICT DO NOTHING;

DROP TABLE predict_meta.market_links_shared;

-- 3. A settlement is a market's fact, kept once per event the market is linked to, so that each
--    user's link resolves that user's event, and one user's link or discard never moves or
--    clears another's (before, one row per market carried the last linker's event).
ALTER TABLE predict_meta.market_settlements DROP CONSTRAINT market_settlements_pkey;
CREATE UNIQUE INDEX idx_market_settlements_market_event
  ON predict_meta.market_settlements (source, source_event_id, event_id) NULLS NOT DISTINCT;

-- Settlements of user-defined markets: one per feed that saw the market, with that feed's own
-- event (where its signals landed, or where its review item was resolved) if its owner can see
-- it, else none.
INSERT INTO predict_meta.market_settlements
  (source, source_event_id, event_id, resolution, resolved_at, last_price, source_url,
   observed_at)
SELECT DISTINCT ON (ms.source, seen.feed_id, ms.source_event_id)
       ms.source, 'feed:' || seen.feed_id::text || ':' || ms.source_event_id,
       CASE WHEN predict_sees_event(f.user_id, predict_user_orgs(f.user_id), e.is_public,
                                    e.org_id, e.created_by) THEN e.id END,
       ms.resolution, ms.resolved_at, ms.last_price, ms.source_url, ms.observed_at
FROM predict_meta.market_settlements ms
JOIN (
  SELECT s.source, s.source_event_id, s.feed_id, s.event_id FROM prediction_signals s
  JOIN user_defined_feeds uf ON uf.id = s.feed_id
  UNION
  SELECT u.raw_data->>'source', u.source_event_id, u.feed_id, u.resolved_event_id
  FROM prediction_unmatched_signals u JOIN user_defined_feeds uf ON uf.id = u.feed_id
) seen ON seen.source = ms.source AND seen.source_event_id = ms.source_event_id
JOIN prediction_data_feeds f ON f.id = seen.feed_id
LEFT JOIN prediction_events e ON e.id = seen.event_id
ORDER BY ms.source, seen.feed_id, ms.source_event_id, seen.event_id NULLS LAST
ON CONFLICT DO NOTHING;
DELETE FROM predict_meta.market_settlements ms
USING prediction_data_sources ds
WHERE ds.adapter_type <> 'built_in' AND ms.source = ds.source_id
  AND ms.source_event_id NOT LIKE 'feed:%';

-- The stored market ids of user-defined feeds, last (the statements above read them as sent).
UPDATE prediction_signals s SET source_event_id = 'feed:' || s.feed_id::text || ':' || s.source_event_id
FROM user_defined_feeds uf
WHERE uf.id = s.feed_id AND s.source_event_id IS NOT NULL;
UPDATE prediction_unmatched_signals u
SET source_event_id = 'feed:' || u.feed_id::text || ':' || u.source_event_id
FROM user_defined_feeds uf
WHERE uf.id = u.feed_id AND u.source_event_id IS NOT NULL;
