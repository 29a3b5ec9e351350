"""Stage 3: per-event snapshots, event state and explanations of significant moves."""
