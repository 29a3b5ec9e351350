"""Source adapters: turn real API responses into normalised records (no Postgres here)."""
