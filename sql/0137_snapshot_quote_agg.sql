-- 0137: predict_quote_agg, array_agg with the size of its state declared (issue 25).
--
-- The snapshot step gathers each (event, interval)'s market quotes with an array aggregate
-- (predict_pipeline/snapshots/compute.py). array_agg's state is `internal` without a declared
-- size, so the planner counts 8 kB for it in every group: a hash aggregate of a day's groups
-- then goes over its group limit and spills to disk (5 batches at 120,000 groups a process in
-- bench/snapshots.py) while it holds under 100 MB. This is array_agg's transition and final
-- functions (the same result) with the state of a group of a dozen quotes declared. No
-- combine function: array_agg_combine exists from PostgreSQL 16 only, and the step's
-- aggregate is not split across parallel workers.
CREATE OR REPLACE AGGREGATE predict_quote_agg(anynonarray) (
  SFUNC = array_agg_transfn,
  STYPE = internal,
  SSPACE = 1024,
  FINALFUNC = array_agg_finalfn,
  FINALFUNC_EXTRA
);
