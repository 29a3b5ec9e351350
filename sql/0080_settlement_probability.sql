-- 0080: the probability a market resolved to when it settled at neither 1 nor 0.
--
-- Manifold's MKT resolution pays `resolutionProbability`, a Kalshi scalar market pays
-- `settlement_value_dollars`, a Polymarket 50-50 split pays 0.5: prediction_resolutions.outcome
-- has no value for that, so such a market settles AMBIGUOUS and keeps its probability here
-- (event_resolutions names it in outcome_details).
ALTER TABLE predict_meta.market_settlements
  ADD COLUMN resolution_probability DOUBLE PRECISION
    CHECK (resolution_probability >= 0 AND resolution_probability <= 1);
