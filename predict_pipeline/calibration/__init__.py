"""Stage 5: resolutions and calibration tables."""
