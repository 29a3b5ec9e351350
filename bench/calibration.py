"""calibration: the calibration step (read resolutions with their horizon probabilities,
compute every category x window row, upsert them) for 100,000 resolved events over six
categories, against a plain SQL avg((p - o)^2) over the same rows in the same run.
Prints `calibration: X.XX s (target <= 0.5)` and the ratio.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import fresh_database

from predict_pipeline.calibration.metrics import calibration_rows
from predict_pipeline.calibration.resolutions import resolved_events
from predict_pipeline.calibration.store import active_categories, save_calibration
from predict_pipeline.db.connection import PIPELINE_ROLE, connect

EVENTS = 100_000

_SEED = [
    """INSERT INTO prediction_events (id, title, slug, category_id, status)
       SELECT md5('e' || i)::uuid, 'Event ' || i, 'event-' || i,
              (SELECT id FROM prediction_categories ORDER BY sort_order
               OFFSET (i %% 6) LIMIT 1), 'RESOLVED_YES'
       FROM generate_series(0, %(n)s::int - 1) i""",
    """INSERT INTO prediction_resolutions (event_id, outcome, final_probability, resolved_at)
       SELECT md5('e' || i)::uuid,
              (ARRAY['YES', 'NO', 'YES', 'NO', 'AMBIGUOUS'])[1 + i %% 5],
              round(random()::numeric, 4),
              now() - make_interval(hours => i %% (24 * 400))
       FROM generate_series(0, %(n)s::int - 1) i""",
]

_BASELINE = """
SELECT avg(power(final_probability - CASE outcome WHEN 'YES' THEN 1 ELSE 0 END, 2))
FROM prediction_resolutions WHERE outcome IN ('YES', 'NO') AND final_probability IS NOT NULL
"""


def main() -> None:
    with fresh_database() as url:
        with connect(url, role=None, autocommit=True) as admin:
            for statement in _SEED:
                admin.execute(statement, {"n": EVENTS})
            admin.execute("VACUUM ANALYZE")
        ours, baseline = [], []
        for _ in range(3):
            with connect(url, role=PIPELINE_ROLE, autocommit=True) as conn:
                started = time.perf_counter()
                conn.execute(_BASELINE).fetchone()
                baseline.append(time.perf_counter() - started)
                started = time.perf_counter()
                with conn.transaction():
                    now = datetime.now(UTC)
                    events = resolved_events(conn)
                    rows = calibration_rows(events, now=now, categories=active_categories(conn))
                    save_calibration(conn, rows, now)
                ours.append(time.perf_counter() - started)
    best = min(ours)
    print(
        f"calibration: {best:.2f} s (target <= 0.5), ratio {best / min(baseline):.1f} of a "
        f"plain SQL Brier ({min(baseline) * 1000:.0f} ms) over {EVENTS:,} resolved events, "
        f"{len(rows)} rows written"
    )


if __name__ == "__main__":
    main()
