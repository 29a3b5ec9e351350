"""predict_pipeline: prediction-market feeds into trusted, calibrated event state."""
