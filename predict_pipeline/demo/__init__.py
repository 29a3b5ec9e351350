"""The demo a new user runs: `seed` (feeds, events, rules and campaigns of the demo user),
`run` (what `make run` does and prints) and `recordings` (real histories uploaded once)."""

from predict_pipeline.demo.seed import (
    DEMO_EXPORT_MAPPING,
    DEMO_FEEDS,
    DEMO_HISTORY_HOURS,
    DEMO_USER_EMAIL,
    DEMO_USER_ID,
    REPLAY_DIR,
    demo_results_export,
    seed_demo,
    seed_simulator,
)

__all__ = [
    "DEMO_EXPORT_MAPPING",
    "DEMO_FEEDS",
    "DEMO_HISTORY_HOURS",
    "DEMO_USER_EMAIL",
    "DEMO_USER_ID",
    "REPLAY_DIR",
    "demo_results_export",
    "seed_demo",
    "seed_simulator",
]
