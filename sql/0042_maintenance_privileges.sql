-- 0042: predict_maintenance (BYPASSRLS, used by retention only) keeps the writes retention
-- makes and no others. 0004 gave it INSERT/UPDATE/DELETE on every table, so a leaked
-- maintenance credential could plant signals in any tenant's event or rewrite orgs; now it may:
--   delete  feed runs, rule executions, review items (resolved), snapshots (downsampling and
--           old months) and audit rows (only inside verified archive slices: 0040);
--   update  review items (feed_run_id of deleted runs), snapshots (downsampled hours) and
--           feeds (signals_ingested_24h);
--   write   usage (predict_pipeline.usage, the usage_counters step);
--   insert  audit entries (as every role, stamped now).
-- It still reads every table. A later migration grants what a new retention step needs.

REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public FROM predict_maintenance;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  REVOKE INSERT, UPDATE, DELETE ON TABLES FROM predict_maintenance;

GRANT DELETE ON prediction_feed_runs, prediction_rule_executions, prediction_unmatched_signals,
  prediction_snapshots, prediction_audit_log TO predict_maintenance;
GRANT UPDATE (feed_run_id) ON prediction_unmatched_signals TO predict_maintenance;
-- Batches lock their rows (SELECT ... FOR UPDATE SKIP LOCKED), which needs UPDATE on some
-- column: the age column each batch is chosen by.
GRANT UPDATE (created_at) ON prediction_feed_runs TO predict_maintenance;
GRANT UPDATE (started_at) ON prediction_rule_executions TO predict_maintenance;
GRANT UPDATE (signal_count, volume) ON prediction_snapshots TO predict_maintenance;
GRANT UPDATE (signals_ingested_24h, updated_at) ON prediction_data_feeds TO predict_maintenance;
GRANT INSERT, UPDATE ON prediction_usage_metrics TO predict_maintenance;
GRANT INSERT ON prediction_audit_log TO predict_maintenance;
