"""Stage 1: fetch feeds into the landing zone and account for every fetch (no Dagster here)."""
