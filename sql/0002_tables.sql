-- 0002: the 28 tables of the documented schema (spec/schema.md), column for column.
-- Order differs from the spec where a table referenced one not yet created.

-- auth.users
-- Stub table for FK references. The real user data lives in the
-- Agencio Authentication Service. This table is synced via webhook
-- or CDC on user create/update/delete events from the auth service.

CREATE TABLE auth.users (
  id UUID PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT,
  avatar_url TEXT,
  is_active BOOLEAN DEFAULT true,
  synced_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_auth_users_email ON auth.users(email);

-- prediction_orgs
CREATE TABLE prediction_orgs (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name TEXT NOT NULL,
  slug TEXT NOT NULL UNIQUE,
  owner_id UUID NOT NULL REFERENCES auth.users(id),
  settings JSONB DEFAULT '{}',
  created_at TIMESTAMPTZ DEFAULT now(),
  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_orgs_owner ON prediction_orgs(owner_id);

-- prediction_org_members
CREATE TABLE prediction_org_members (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id UUID NOT NULL REFERENCES prediction_orgs(id) ON DELETE CASCADE,
  user_id UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
  role TEXT NOT NULL DEFAULT 'member'
    CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  invited_by UUID REFERENCES auth.users(id),
  accepted_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE UNIQUE INDEX idx_org_members_unique ON prediction_org_members(org_id, user_id);
CREATE INDEX idx_org_members_user ON prediction_org_members(user_id);

-- prediction_subscriptions
CREATE TABLE prediction_subscriptions (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES auth.users(id) UNIQUE,
  org_id UUID REFERENCES prediction_orgs(id),

  -- Plan
  tier TEXT NOT NULL DEFAULT 'free'
    CHECK (tier IN ('free', 'pro', 'team', 'enterprise',
                    'api_developer', 'api_startup', 'api_growth', 'api_enterprise')),

  -- Payment provider
  stripe_customer_id TEXT UNIQUE,
  stripe_subscription_id TEXT UNIQUE,

  -- Status
  status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'past_due', 'cancelled', 'trialing', 'paused')),

  -- Feature limits (NULL = unlimited)
  max_events INTEGER,
  max_rules INTEGER,
  max_campaigns_per_month INTEGER,
  max_feeds INTEGER,
  max_team_members INTEGER,
  api_rate_limit_rpm INTEGER,
  api_rate_limit_rpd INTEGER,
  realtime_enabled BOOLEAN DEFAULT false,

  -- Period
  current_period_start TIMESTAMPTZ,
  current_period_end TIMESTAMPTZ,
  trial_end TIMESTAMPTZ,
  cancelled_at TIMESTAMPTZ,

  created_at TIMESTAMPTZ DEFAULT now(),
  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_subscriptions_tier ON prediction_subscriptions(tier);
CREATE INDEX idx_subscriptions_stripe ON prediction_subscriptions(stripe_customer_id);

-- prediction_api_keys
CREATE TABLE prediction_api_keys (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  key_prefix TEXT NOT NULL,              -- first 12 chars for display: "pk_live_abc1"
  key_hash TEXT NOT NULL UNIQUE,         -- SHA-256 of full key
  scopes TEXT[] DEFAULT '{read}',        -- ['read', 'signals', 'trust', 'marketing', 'write']
  rate_limit_rpm INTEGER NOT NULL DEFAULT 10,
  rate_limit_rpd INTEGER NOT NULL DEFAULT 100,
  last_used_at TIMESTAMPTZ,
  last_used_ip INET,
  is_active BOOLEAN DEFAULT true,
  expires_at TIMESTAMPTZ,
  revoked_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_api_keys_hash ON prediction_api_keys(key_hash) WHERE is_active = true;
CREATE INDEX idx_api_keys_user ON prediction_api_keys(user_id);

-- prediction_usage_metrics
CREATE TABLE prediction_usage_metrics (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
  period_start TIMESTAMPTZ NOT NULL,
  period_end TIMESTAMPTZ NOT NULL,

  api_calls INTEGER DEFAULT 0,
  events_tracked INTEGER DEFAULT 0,
  rules_active INTEGER DEFAULT 0,
  campaigns_created INTEGER DEFAULT 0,
  explanations_generated INTEGER DEFAULT 0,
  feeds_active INTEGER DEFAULT 0,
  signals_ingested BIGINT DEFAULT 0,
  storage_bytes_used BIGINT DEFAULT 0,
  llm_tokens_used BIGINT DEFAULT 0,
  llm_cost_cents INTEGER DEFAULT 0,

  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE UNIQUE INDEX idx_usage_user_period ON prediction_usage_metrics(user_id, period_start);

-- prediction_categories
CREATE TABLE prediction_categories (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name TEXT NOT NULL UNIQUE,
  slug TEXT NOT NULL UNIQUE,
  description TEXT,
  icon TEXT,
  sort_order INTEGER DEFAULT 0,
  is_active BOOLEAN DEFAULT true,
  created_at TIMESTAMPTZ DEFAULT now()
);

INSERT INTO prediction_categories (name, slug, description, sort_order) VALUES
  ('Geopolitics', 'geopolitics', 'International relations, conflicts, elections', 1),
  ('Technology', 'technology', 'Tech industry, AI, crypto, product launches', 2),
  ('Marketing', 'marketing', 'Campaign outcomes, viral content, brand events', 3),
  ('Finance', 'finance', 'Markets, commodities, economic indicators', 4),
  ('Sports', 'sports', 'Game outcomes, player transfers, league events', 5),
  ('Entertainment', 'entertainment', 'Box office, awards, streaming, cultural events', 6);

-- prediction_events
CREATE TABLE prediction_events (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  category_id UUID REFERENCES prediction_categories(id),

  -- Event definition
  title TEXT NOT NULL,
  description TEXT,
  slug TEXT NOT NULL UNIQUE,
  image_url TEXT,

  -- Current state (denormalised for fast reads — canonical source is latest snapshot)
  current_probability DECIMAL(5,4) CHECK (current_probability >= 0 AND current_probability <= 1),
  sentiment_score DECIMAL(5,4) CHECK (sentiment_score >= -1 AND sentiment_score <= 1),
  confidence TEXT CHECK (confidence IN ('LOW', 'MEDIUM', 'HIGH', 'VERY_HIGH')),
  divergence TEXT CHECK (divergence IN ('NONE', 'LOW', 'MEDIUM', 'HIGH', 'EXTREME')),
  trust_score DECIMAL(5,4) CHECK (trust_score >= 0 AND trust_score <= 1),
  volatility DECIMAL(5,4) CHECK (volatility >= 0 AND volatility <= 1),

  -- Previous state (for trigger "crosses" evaluation — updated atomically)
  previous_probability DECIMAL(5,4),
  previous_sentiment DECIMAL(5,4),
  previous_trust_score DECIMAL(5,4),
  previous_divergence TEXT,

  -- Resolution
  status TEXT NOT NULL DEFAULT 'ACTIVE'
    CHECK (status IN ('ACTIVE', 'PAUSED', 'RESOLVED_YES', 'RESOLVED_NO', 'RESOLVED_AMBIGUOUS', 'CANCELLED')),
  resolution_criteria TEXT,
  resolution_date TIMESTAMPTZ,
  resolved_at TIMESTAMPTZ,

  -- Metadata
  source_urls TEXT[],
  tags TEXT[],
  is_public BOOLEAN DEFAULT true,       -- false = org-private event
  org_id UUID REFERENCES prediction_orgs(id),
  created_by UUID REFERENCES auth.users(id),
  created_at TIMESTAMPTZ DEFAULT now(),
  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_events_category ON prediction_events(category_id);
CREATE INDEX idx_events_status ON prediction_events(status);
CREATE INDEX idx_events_probability ON prediction_events(current_probability);
CREATE INDEX idx_events_created ON prediction_events(created_at DESC);
CREATE INDEX idx_events_tags ON prediction_events USING GIN(tags);
CREATE INDEX idx_events_slug ON prediction_events(slug);
CREATE INDEX idx_events_org ON prediction_events(org_id) WHERE org_id IS NOT NULL;
CREATE INDEX idx_events_updated ON prediction_events(updated_at DESC);

-- prediction_data_sources
CREATE TABLE prediction_data_sources (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  source_id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  category TEXT NOT NULL CHECK (category IN (
    'prediction_market', 'news', 'social', 'financial', 'alternative', 'government', 'custom'
  )),
  description TEXT,
  icon_url TEXT,

  adapter_type TEXT NOT NULL CHECK (adapter_type IN ('built_in', 'custom_api', 'webhook', 'upload')),
  config_schema JSONB,
  default_config JSONB,

  supports_pull BOOLEAN DEFAULT true,
  supports_push BOOLEAN DEFAULT false,
  supports_backfill BOOLEAN DEFAULT false,

  rate_limit_rpm INTEGER,
  rate_limit_rpd INTEGER,

  is_system BOOLEAN DEFAULT false,
  status TEXT DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DEPRECATED', 'DISABLED')),
  created_at TIMESTAMPTZ DEFAULT now()
);

-- prediction_data_feeds
CREATE TABLE prediction_data_feeds (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  source_id UUID NOT NULL REFERENCES prediction_data_sources(id),
  user_id UUID NOT NULL REFERENCES auth.users(id),

  name TEXT NOT NULL,
  config JSONB NOT NULL DEFAULT '{}',

  poll_interval_minutes INTEGER DEFAULT 15,
  cron_expression TEXT,
  next_run_at TIMESTAMPTZ,

  event_mapping_mode TEXT DEFAULT 'auto'
    CHECK (event_mapping_mode IN ('auto', 'manual', 'ai')),
  manual_event_mappings JSONB,

  default_signal_type TEXT DEFAULT 'MARKET_PRICE',
  default_weight DECIMAL(3,2) DEFAULT 1.0 CHECK (default_weight >= 0 AND default_weight <= 5),
  transform_config JSONB,

  credentials_encrypted JSONB,           -- encrypted at application layer
  auth_status TEXT DEFAULT 'ACTIVE'
    CHECK (auth_status IN ('ACTIVE', 'EXPIRED', 'INVALID', 'PENDING')),
  auth_expires_at TIMESTAMPTZ,

  enabled BOOLEAN DEFAULT true,
  last_successful_run TIMESTAMPTZ,
  last_error TEXT,
  consecutive_failures INTEGER DEFAULT 0,
  auto_disabled_at TIMESTAMPTZ,

  avg_latency_ms INTEGER,
  signals_ingested_total BIGINT DEFAULT 0,
  signals_ingested_24h INTEGER DEFAULT 0,

  created_at TIMESTAMPTZ DEFAULT now(),
  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_feeds_source ON prediction_data_feeds(source_id);
CREATE INDEX idx_feeds_user ON prediction_data_feeds(user_id);
CREATE INDEX idx_feeds_next_run ON prediction_data_feeds(next_run_at) WHERE enabled = true;

-- prediction_signals
CREATE TABLE prediction_signals (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,
  -- Fix: prediction_data_feeds is created above (the spec referenced it before it existed).
  feed_id UUID REFERENCES prediction_data_feeds(id),  -- which feed produced this signal

  -- Source
  source TEXT NOT NULL,
  source_url TEXT,
  source_event_id TEXT,

  -- Signal data
  signal_type TEXT NOT NULL
    CHECK (signal_type IN ('MARKET_PRICE', 'SENTIMENT', 'VOLUME', 'NEWS', 'SOCIAL', 'EXPERT', 'MANUAL')),
  value DECIMAL(10,4),
  raw_data JSONB,
  narrative TEXT,

  -- Quality
  weight DECIMAL(3,2) DEFAULT 1.0 CHECK (weight >= 0 AND weight <= 5),
  reliability DECIMAL(3,2) CHECK (reliability >= 0 AND reliability <= 1),

  fetched_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_signals_event ON prediction_signals(event_id);
CREATE INDEX idx_signals_source ON prediction_signals(source);
CREATE INDEX idx_signals_type ON prediction_signals(signal_type);
CREATE INDEX idx_signals_fetched ON prediction_signals(fetched_at DESC);
CREATE INDEX idx_signals_feed ON prediction_signals(feed_id) WHERE feed_id IS NOT NULL;

-- Deduplication: same source + external ID + type within 5-min window
-- Fix: date_trunc/EXTRACT on timestamptz depend on the session TimeZone (not IMMUTABLE, and
-- non-UTC zones would shift buckets); date_bin over absolute time is IMMUTABLE and UTC-aligned.
CREATE UNIQUE INDEX idx_signals_dedup ON prediction_signals (
  source, source_event_id, signal_type,
  date_bin('5 minutes', fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
) WHERE source_event_id IS NOT NULL;

-- prediction_snapshots
-- Fix: declaratively partitioned by month as the spec intends; a partitioned table's primary
-- key must contain the partition key, so it is (id, snapshot_at).
CREATE TABLE prediction_snapshots (
  id UUID NOT NULL DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,

  probability DECIMAL(5,4) CHECK (probability >= 0 AND probability <= 1),
  sentiment_score DECIMAL(5,4) CHECK (sentiment_score >= -1 AND sentiment_score <= 1),
  trust_score DECIMAL(5,4) CHECK (trust_score >= 0 AND trust_score <= 1),
  volatility DECIMAL(5,4) CHECK (volatility >= 0 AND volatility <= 1),
  volume INTEGER DEFAULT 0,
  divergence TEXT CHECK (divergence IN ('NONE', 'LOW', 'MEDIUM', 'HIGH', 'EXTREME')),
  signal_count INTEGER DEFAULT 0,        -- total signals contributing to this snapshot

  snapshot_at TIMESTAMPTZ NOT NULL DEFAULT now(),

  PRIMARY KEY (id, snapshot_at)
) PARTITION BY RANGE (snapshot_at);

CREATE INDEX idx_snapshots_event_time ON prediction_snapshots(event_id, snapshot_at DESC);

-- Monthly partitions (prediction_snapshots_y2026m03 ...) are created by
-- predict_ensure_snapshot_partitions(), defined in the next migration.

-- prediction_explanations
CREATE TABLE prediction_explanations (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,

  -- What triggered this explanation
  trigger_type TEXT NOT NULL
    CHECK (trigger_type IN ('PROBABILITY_SHIFT', 'SENTIMENT_SHIFT', 'ANOMALY', 'DIVERGENCE', 'SCHEDULED', 'MANUAL', 'RESOLUTION')),
  trigger_data JSONB,

  -- The explanation
  headline TEXT NOT NULL,
  summary TEXT NOT NULL,
  detailed TEXT,
  contributing_signals UUID[],
  factors JSONB,

  -- AI metadata
  model_used TEXT,
  prompt_version TEXT,                   -- track prompt template version for quality
  prompt_tokens INTEGER,
  completion_tokens INTEGER,
  generation_time_ms INTEGER,

  -- Quality feedback
  thumbs_up INTEGER DEFAULT 0,
  thumbs_down INTEGER DEFAULT 0,

  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_explanations_event ON prediction_explanations(event_id);
CREATE INDEX idx_explanations_trigger ON prediction_explanations(trigger_type);
CREATE INDEX idx_explanations_created ON prediction_explanations(created_at DESC);

-- prediction_trust_scores
CREATE TABLE prediction_trust_scores (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,

  overall_score DECIMAL(5,4) CHECK (overall_score >= 0 AND overall_score <= 1),
  manipulation_risk TEXT CHECK (manipulation_risk IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),

  -- Breakdown (all 0-1 range)
  market_integrity DECIMAL(5,4) CHECK (market_integrity >= 0 AND market_integrity <= 1),
  sentiment_authenticity DECIMAL(5,4) CHECK (sentiment_authenticity >= 0 AND sentiment_authenticity <= 1),
  source_diversity DECIMAL(5,4) CHECK (source_diversity >= 0 AND source_diversity <= 1),
  volume_consistency DECIMAL(5,4) CHECK (volume_consistency >= 0 AND volume_consistency <= 1),
  temporal_consistency DECIMAL(5,4) CHECK (temporal_consistency >= 0 AND temporal_consistency <= 1),

  flagged_activity BOOLEAN DEFAULT false,
  flag_count INTEGER DEFAULT 0,

  computed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_trust_event ON prediction_trust_scores(event_id);
CREATE INDEX idx_trust_event_latest ON prediction_trust_scores(event_id, computed_at DESC);
CREATE INDEX idx_trust_risk ON prediction_trust_scores(manipulation_risk);

-- prediction_trust_flags
CREATE TABLE prediction_trust_flags (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,
  trust_score_id UUID REFERENCES prediction_trust_scores(id),

  flag_type TEXT NOT NULL CHECK (flag_type IN (
    'INSIDER_TIMING',
    'VOLUME_SPIKE',
    'COORDINATED_ACTION',
    'BOT_SENTIMENT',
    'WASH_TRADING',
    'NARRATIVE_PLANT',
    'SOURCE_MANIPULATION',
    'OTHER'
  )),

  severity TEXT NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'ALERT', 'CRITICAL')),
  description TEXT NOT NULL,
  evidence JSONB,
  related_signals UUID[],

  reviewed BOOLEAN DEFAULT false,
  reviewed_by UUID REFERENCES auth.users(id),
  reviewed_at TIMESTAMPTZ,
  review_notes TEXT,

  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_flags_event ON prediction_trust_flags(event_id);
CREATE INDEX idx_flags_type ON prediction_trust_flags(flag_type);
CREATE INDEX idx_flags_severity ON prediction_trust_flags(severity);
CREATE INDEX idx_flags_unreviewed ON prediction_trust_flags(created_at DESC) WHERE reviewed = false;

-- prediction_resolutions
CREATE TABLE prediction_resolutions (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE UNIQUE,

  outcome TEXT NOT NULL CHECK (outcome IN ('YES', 'NO', 'AMBIGUOUS', 'CANCELLED')),
  outcome_details TEXT,
  evidence_urls TEXT[],

  -- What we predicted at close
  final_probability DECIMAL(5,4),
  market_final_probability DECIMAL(5,4),

  -- Resolution workflow
  resolved_by UUID REFERENCES auth.users(id),
  resolution_method TEXT NOT NULL DEFAULT 'manual'
    CHECK (resolution_method IN ('manual', 'automated', 'market_settled', 'community')),
  resolved_at TIMESTAMPTZ NOT NULL DEFAULT now(),

  -- Dispute window
  dispute_window_end TIMESTAMPTZ,
  is_disputed BOOLEAN DEFAULT false,
  is_final BOOLEAN DEFAULT false         -- true after dispute window closes with no dispute
);

CREATE INDEX idx_resolutions_event ON prediction_resolutions(event_id);
CREATE INDEX idx_resolutions_outcome ON prediction_resolutions(outcome);
CREATE INDEX idx_resolutions_disputed ON prediction_resolutions(is_disputed) WHERE is_disputed = true;

-- prediction_resolution_disputes
CREATE TABLE prediction_resolution_disputes (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  resolution_id UUID NOT NULL REFERENCES prediction_resolutions(id) ON DELETE CASCADE,
  event_id UUID NOT NULL REFERENCES prediction_events(id),

  disputed_by UUID NOT NULL REFERENCES auth.users(id),
  reason TEXT NOT NULL,
  evidence_urls TEXT[],

  status TEXT NOT NULL DEFAULT 'open'
    CHECK (status IN ('open', 'under_review', 'upheld', 'overturned', 'dismissed')),
  reviewed_by UUID REFERENCES auth.users(id),
  review_notes TEXT,
  reviewed_at TIMESTAMPTZ,

  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_disputes_resolution ON prediction_resolution_disputes(resolution_id);
CREATE INDEX idx_disputes_status ON prediction_resolution_disputes(status);

-- prediction_calibration_scores
CREATE TABLE prediction_calibration_scores (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  category_id UUID REFERENCES prediction_categories(id), -- NULL = global
  time_window TEXT NOT NULL CHECK (time_window IN ('7D', '30D', '90D', 'ALL_TIME')),

  total_predictions INTEGER NOT NULL DEFAULT 0,
  resolved_predictions INTEGER NOT NULL DEFAULT 0,
  brier_score DECIMAL(6,4),
  log_score DECIMAL(8,4),
  accuracy_at_50 DECIMAL(5,4),
  accuracy_at_70 DECIMAL(5,4),
  accuracy_at_90 DECIMAL(5,4),

  calibration_curve JSONB,

  computed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_calibration_category ON prediction_calibration_scores(category_id);
CREATE INDEX idx_calibration_window ON prediction_calibration_scores(time_window);
CREATE UNIQUE INDEX idx_calibration_unique ON prediction_calibration_scores(
  COALESCE(category_id, '00000000-0000-0000-0000-000000000000'), time_window
);

-- prediction_campaigns
CREATE TABLE prediction_campaigns (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES auth.users(id),
  org_id UUID REFERENCES prediction_orgs(id),

  -- Campaign details
  name TEXT NOT NULL,
  description TEXT,
  target_audience TEXT,
  platform TEXT CHECK (platform IN ('tiktok', 'instagram', 'x', 'linkedin', 'youtube', 'google', 'meta', 'multi')),
  campaign_type TEXT CHECK (campaign_type IN ('brand_awareness', 'conversion', 'engagement', 'launch', 'retention')),

  -- Persona link (Agencio integration)
  persona_id UUID,

  -- Prediction output
  overall_success_probability DECIMAL(5,4) CHECK (overall_success_probability >= 0 AND overall_success_probability <= 1),
  recommended_variant_id UUID,
  prediction_explanation TEXT,
  factors JSONB,
  predicted_at TIMESTAMPTZ,              -- when prediction was generated

  -- Resolution
  status TEXT DEFAULT 'DRAFT' CHECK (status IN ('DRAFT', 'PREDICTED', 'LAUNCHED', 'COMPLETED', 'ARCHIVED')),
  created_at TIMESTAMPTZ DEFAULT now(),
  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_campaigns_user ON prediction_campaigns(user_id);
CREATE INDEX idx_campaigns_org ON prediction_campaigns(org_id) WHERE org_id IS NOT NULL;
CREATE INDEX idx_campaigns_status ON prediction_campaigns(status);

-- prediction_campaign_events
CREATE TABLE prediction_campaign_events (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  campaign_id UUID NOT NULL REFERENCES prediction_campaigns(id) ON DELETE CASCADE,
  event_id UUID NOT NULL REFERENCES prediction_events(id) ON DELETE CASCADE,

  relationship TEXT NOT NULL DEFAULT 'monitors'
    CHECK (relationship IN ('monitors', 'depends_on', 'contraindicates')),
  -- monitors:        campaign watches this event for context
  -- depends_on:      campaign success depends on event outcome
  -- contraindicates: event going YES is bad for the campaign

  probability_threshold DECIMAL(5,4),    -- optional: trigger action if event crosses this
  notes TEXT,

  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE UNIQUE INDEX idx_campaign_events_unique ON prediction_campaign_events(campaign_id, event_id);
CREATE INDEX idx_campaign_events_event ON prediction_campaign_events(event_id);

-- prediction_campaign_variants
CREATE TABLE prediction_campaign_variants (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  campaign_id UUID NOT NULL REFERENCES prediction_campaigns(id) ON DELETE CASCADE,

  label TEXT NOT NULL,
  hook TEXT,
  creative_url TEXT,
  content_description TEXT,

  -- Prediction
  success_probability DECIMAL(5,4) CHECK (success_probability >= 0 AND success_probability <= 1),
  predicted_engagement DECIMAL(5,4) CHECK (predicted_engagement >= 0 AND predicted_engagement <= 1),
  predicted_conversion DECIMAL(5,4) CHECK (predicted_conversion >= 0 AND predicted_conversion <= 1),
  reasoning TEXT,
  scoring_factors JSONB,

  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_variants_campaign ON prediction_campaign_variants(campaign_id);

-- prediction_campaign_results
CREATE TABLE prediction_campaign_results (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  campaign_id UUID NOT NULL REFERENCES prediction_campaigns(id) ON DELETE CASCADE,
  variant_id UUID REFERENCES prediction_campaign_variants(id),

  -- Actual metrics
  impressions INTEGER,
  clicks INTEGER,
  conversions INTEGER,
  spend_cents INTEGER,                   -- total spend in cents
  revenue_cents INTEGER,                 -- total revenue in cents

  -- Computed
  actual_ctr DECIMAL(7,4),               -- clicks / impressions
  actual_conversion_rate DECIMAL(7,4),   -- conversions / clicks
  actual_roas DECIMAL(7,2),             -- revenue / spend
  actual_engagement_rate DECIMAL(7,4),

  -- Comparison to prediction
  prediction_error DECIMAL(5,4),         -- |predicted - actual|
  prediction_direction_correct BOOLEAN,  -- did we get the direction right?

  -- Period
  result_period_start TIMESTAMPTZ,
  result_period_end TIMESTAMPTZ,
  recorded_at TIMESTAMPTZ DEFAULT now(),
  recorded_by UUID REFERENCES auth.users(id)
);

CREATE INDEX idx_results_campaign ON prediction_campaign_results(campaign_id);
CREATE INDEX idx_results_variant ON prediction_campaign_results(variant_id);
CREATE INDEX idx_results_recorded ON prediction_campaign_results(recorded_at DESC);

-- prediction_rules
CREATE TABLE prediction_rules (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES auth.users(id),
  org_id UUID REFERENCES prediction_orgs(id),

  -- Definition
  name TEXT NOT NULL,
  description TEXT,
  enabled BOOLEAN DEFAULT true,

  -- Scope
  scope_type TEXT NOT NULL CHECK (scope_type IN ('event', 'category', 'all', 'campaign', 'tag')),
  scope_id UUID,
  scope_tag TEXT,

  -- Trigger
  trigger_type TEXT NOT NULL,
  trigger_params JSONB NOT NULL DEFAULT '{}',

  -- Actions (ordered array)
  actions JSONB NOT NULL DEFAULT '[]',

  -- Throttling
  cooldown_minutes INTEGER DEFAULT 60,
  max_fires_per_day INTEGER DEFAULT 10,
  active_hours JSONB,

  -- Lifecycle
  is_system BOOLEAN DEFAULT false,
  expires_at TIMESTAMPTZ,
  last_fired_at TIMESTAMPTZ,
  fire_count INTEGER DEFAULT 0,

  created_at TIMESTAMPTZ DEFAULT now(),
  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_rules_user ON prediction_rules(user_id);
CREATE INDEX idx_rules_org ON prediction_rules(org_id) WHERE org_id IS NOT NULL;
CREATE INDEX idx_rules_scope ON prediction_rules(scope_type, scope_id);
CREATE INDEX idx_rules_enabled ON prediction_rules(enabled) WHERE enabled = true;
CREATE INDEX idx_rules_trigger ON prediction_rules(trigger_type);

-- prediction_rule_executions
CREATE TABLE prediction_rule_executions (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  rule_id UUID NOT NULL REFERENCES prediction_rules(id) ON DELETE CASCADE,
  event_id UUID REFERENCES prediction_events(id),

  trigger_snapshot JSONB NOT NULL,
  status TEXT NOT NULL DEFAULT 'PENDING'
    CHECK (status IN ('PENDING', 'EXECUTING', 'COMPLETED', 'PARTIAL_FAILURE', 'FAILED',
                      'SKIPPED_COOLDOWN', 'SKIPPED_HOURS', 'SKIPPED_LIMIT')),

  action_results JSONB DEFAULT '[]',

  started_at TIMESTAMPTZ DEFAULT now(),
  completed_at TIMESTAMPTZ,
  error_message TEXT,
  retry_count INTEGER DEFAULT 0
);

CREATE INDEX idx_executions_rule ON prediction_rule_executions(rule_id);
CREATE INDEX idx_executions_event ON prediction_rule_executions(event_id);
CREATE INDEX idx_executions_status ON prediction_rule_executions(status);
CREATE INDEX idx_executions_started ON prediction_rule_executions(started_at DESC);

-- prediction_action_connections
CREATE TABLE prediction_action_connections (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,

  platform TEXT NOT NULL,
  credentials JSONB NOT NULL,            -- encrypted at application layer (AES-256-GCM)
  scopes TEXT[],

  status TEXT DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'EXPIRED', 'REVOKED', 'ERROR')),
  last_used_at TIMESTAMPTZ,
  expires_at TIMESTAMPTZ,
  error_message TEXT,

  created_at TIMESTAMPTZ DEFAULT now(),
  updated_at TIMESTAMPTZ DEFAULT now()
);

CREATE UNIQUE INDEX idx_connections_user_platform ON prediction_action_connections(user_id, platform);

-- prediction_feed_runs
CREATE TABLE prediction_feed_runs (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  feed_id UUID NOT NULL REFERENCES prediction_data_feeds(id) ON DELETE CASCADE,

  started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  completed_at TIMESTAMPTZ,
  duration_ms INTEGER,

  status TEXT NOT NULL DEFAULT 'RUNNING'
    CHECK (status IN ('RUNNING', 'SUCCESS', 'PARTIAL', 'FAILED', 'TIMEOUT', 'RATE_LIMITED', 'AUTH_FAILED')),

  signals_fetched INTEGER DEFAULT 0,
  signals_valid INTEGER DEFAULT 0,
  signals_deduplicated INTEGER DEFAULT 0,
  signals_matched INTEGER DEFAULT 0,
  signals_unmatched INTEGER DEFAULT 0,
  signals_written INTEGER DEFAULT 0,
  events_updated INTEGER DEFAULT 0,

  request_count INTEGER DEFAULT 0,
  bytes_received BIGINT DEFAULT 0,
  rate_limit_remaining INTEGER,
  error_message TEXT,
  error_details JSONB,

  triggers_evaluated INTEGER DEFAULT 0,
  triggers_fired INTEGER DEFAULT 0,

  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_runs_feed ON prediction_feed_runs(feed_id);
CREATE INDEX idx_runs_status ON prediction_feed_runs(status);
CREATE INDEX idx_runs_started ON prediction_feed_runs(started_at DESC);

-- prediction_unmatched_signals
CREATE TABLE prediction_unmatched_signals (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  feed_run_id UUID REFERENCES prediction_feed_runs(id),
  feed_id UUID NOT NULL REFERENCES prediction_data_feeds(id),

  source_event_id TEXT,
  signal_type TEXT,
  value DECIMAL(10,4),
  narrative TEXT,
  raw_data JSONB,

  match_attempts JSONB,
  suggested_event_id UUID REFERENCES prediction_events(id),
  suggestion_confidence DECIMAL(3,2) CHECK (suggestion_confidence >= 0 AND suggestion_confidence <= 1),

  status TEXT DEFAULT 'PENDING'
    CHECK (status IN ('PENDING', 'MATCHED', 'NEW_EVENT_CREATED', 'DISCARDED')),
  resolved_event_id UUID REFERENCES prediction_events(id),
  resolved_by UUID REFERENCES auth.users(id),
  resolved_at TIMESTAMPTZ,

  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_unmatched_feed ON prediction_unmatched_signals(feed_id);
CREATE INDEX idx_unmatched_status ON prediction_unmatched_signals(status);
CREATE INDEX idx_unmatched_pending ON prediction_unmatched_signals(created_at DESC) WHERE status = 'PENDING';

-- prediction_audit_log
CREATE TABLE prediction_audit_log (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),

  -- Who
  actor_id UUID,
  actor_type TEXT NOT NULL CHECK (actor_type IN ('user', 'service', 'system', 'api_key')),
  actor_ip INET,
  actor_user_agent TEXT,

  -- What
  action TEXT NOT NULL,
  resource_type TEXT NOT NULL,
  resource_id UUID,

  -- Details
  details JSONB,
  previous_state JSONB,
  new_state JSONB,

  -- Context
  request_id TEXT,
  service TEXT,

  severity TEXT DEFAULT 'INFO' CHECK (severity IN ('INFO', 'WARNING', 'ALERT', 'CRITICAL')),
  created_at TIMESTAMPTZ DEFAULT now()
);

CREATE INDEX idx_audit_actor ON prediction_audit_log(actor_id);
CREATE INDEX idx_audit_action ON prediction_audit_log(action);
CREATE INDEX idx_audit_resource ON prediction_audit_log(resource_type, resource_id);
CREATE INDEX idx_audit_severity ON prediction_audit_log(severity) WHERE severity IN ('ALERT', 'CRITICAL');
CREATE INDEX idx_audit_created ON prediction_audit_log(created_at DESC);

-- Immutability for the application role is enforced in 0004_security.sql, after the roles exist.
