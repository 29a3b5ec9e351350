"""The campaign loop: results in, predictions out, and how good they were.

- intake.py: result rows from the CLI, files and ad platforms' pushes, read and checked, kept
  as submissions (predict_meta.campaign_result_submissions).
- results.py: submissions landed into prediction_campaign_results; derived metrics, the
  prediction in force frozen on each row, errors, direction and success.
- model.py: Beta-binomial partial pooling by platform and campaign type, and linked events.
- predict.py: the model's inputs read and its predictions written; re-prediction requests.
- calibration.py: prediction_campaign_calibration (Brier on success, MAE on rates).

Nothing here knows Dagster; predict_pipeline/defs/campaigns.py is the asset layer.
"""
