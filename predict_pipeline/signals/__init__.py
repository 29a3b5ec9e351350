"""Stage 2: validated, deduplicated signals matched to events."""
