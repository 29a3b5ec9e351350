"""push_parse: reading upload / webhook bodies (JSON and JSON Lines) of 0.2 to 5 MB with
`parse_upload`, against `json.loads` of the same bytes (the stdlib's C decoder: a linear
baseline) measured in the same run.

Each body holds realistic records (id, type, value, time, title, category, status, url); one
record in a thousand has a timestamp outside the accepted range, so the run also places
rejects (which needs the positional reader). Prints, per size and format, the seconds and the
ratio to the baseline, then `push_parse: X s (target <= 2.0)` for the 5 MB bodies and the
growth of time with size (linear reading: about the growth of the size).
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predict_pipeline.sources.push.delivery import parse_upload

SIZES_MB = (0.2, 0.4, 0.8, 5.0)
TARGET_S = 2.0
RECEIVED_AT = datetime(2026, 11, 1, 11, tzinfo=UTC)


def body(size_bytes: int, lines: bool) -> tuple[bytes, int]:
    rng = random.Random(7)
    records: list[dict] = []
    size = 0
    while size < size_bytes:
        n = len(records)
        fetched = f"2026-11-01T10:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
        record = {
            "source_event_id": f"mkt-{n:06d}",
            "signal_type": "MARKET_PRICE",
            "value": round(rng.random(), 4),
            "fetched_at": "0001-01-01T00:00:00Z" if n % 1000 == 999 else fetched,
            "title": "Will the measure pass by the end of the quarter?",
            "category": "politics; us",
            "status": "open",
            "source_url": f"https://example.org/m/{n}",
        }
        records.append(record)
        size += len(json.dumps(record)) + 2
    if lines:
        return ("\n".join(json.dumps(r) for r in records) + "\n").encode(), len(records)
    return json.dumps(records, indent=1).encode(), len(records)


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    results: dict[tuple[str, float], float] = {}
    for fmt, lines in (("JSON", False), ("JSON Lines", True)):
        for mb in SIZES_MB:
            data, count = body(int(mb * 1_000_000), lines)
            name = "body.jsonl" if lines else "body.json"

            def parse(data=data, name=name):
                return parse_upload(data, name, feed_config={}, received_at=RECEIVED_AT)

            records, rejects = parse()
            assert len(records) + len(rejects) == count and len(rejects) == count // 1000
            seconds = best_of(3, parse)

            def decode(data=data, lines=lines):
                if lines:
                    return [json.loads(line) for line in data.splitlines()]
                return json.loads(data)

            baseline = best_of(3, decode)
            results[(fmt, mb)] = seconds
            print(
                f"  {fmt:<10} {mb:>4} MB: {count:>6} records, {seconds:6.3f} s, "
                f"json.loads {baseline:6.3f} s, ratio {seconds / baseline:5.1f}"
            )
    small, large = SIZES_MB[0], SIZES_MB[-1]
    for fmt in ("JSON", "JSON Lines"):
        growth = results[(fmt, large)] / results[(fmt, small)]
        print(
            f"push_parse: {fmt} {large:g} MB in {results[(fmt, large)]:.2f} s "
            f"(target <= {TARGET_S}); x{large / small:g} size took x{growth:.1f} time"
        )


if __name__ == "__main__":
    main()
