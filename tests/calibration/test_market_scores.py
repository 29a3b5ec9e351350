"""Per-market scores (prediction_market_scores, v_market_scores): every series of a resolved
event read at each horizon, through resolve_from_markets on a real Postgres, checked against
hand computations and scikit-learn."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from predict_pipeline.calibration.market_scores import HORIZONS
from predict_pipeline.calibration.resolutions import mark_for_rescoring, resolve_from_markets
from predict_pipeline.demo.recordings import (
    create_recording_feed,
    manifold_recording,
    predictit_recording,
    upload_recording,
)
from predict_pipeline.ingestion.pushed import hour_window
from predict_pipeline.signals.stage import validate_window
from tests.support.tenants import as_user

CLOSE = datetime(2026, 10, 1, 12, tzinfo=UTC)
NOW = CLOSE + timedelta(days=2)
H, D = timedelta(hours=1), timedelta(days=1)
LOG_CLIP = 0.0001
HALF_LIFE, CARRY, EPS = 60.0, timedelta(days=30), 0.001


def _event(conn, slug: str, *, created_by: uuid.UUID | None = None) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO prediction_events (title, slug, resolution_date, is_public, created_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (f"Event {slug}", slug, CLOSE, created_by is None, created_by),
    ).fetchone()[0]


def _observe(conn, event, history: list[tuple[str, str, str, float, datetime]]) -> None:
    """(source, market, signal type, value, moment) rows, weight 1 and reliability 0.9."""
    moments = [at for *_, at in history]
    conn.execute(
        "SELECT predict_ensure_signal_partitions(%s, %s)", (min(moments), max(moments))
    ).fetchall()
    conn.cursor().executemany(
        "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,"
        " weight, reliability, fetched_at) VALUES (%s, %s, %s, %s, %s, 1, 0.9, %s)",
        [(event, *row) for row in history],
    )


def _settle(conn, event, market: str, outcome: str) -> None:
    conn.execute(
        "INSERT INTO predict_meta.market_settlements (source, source_event_id, event_id,"
        " resolution, resolved_at, last_price, observed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (market.split(":")[0], market, event, outcome, CLOSE + H, 1.0, CLOSE + H),
    )


def _resolve(conn, now: datetime = NOW) -> None:
    with conn.transaction():
        resolve_from_markets(conn, now=now)


def _reads(conn, event) -> dict[tuple[str, str], tuple[float, datetime]]:
    """(series, horizon) -> (probability, observed_at); series is the market id or pooled."""
    return {
        (market or "pooled", horizon): (p, at)
        for market, horizon, p, at in conn.execute(
            "SELECT source_event_id, horizon, probability, observed_at"
            " FROM prediction_market_scores WHERE event_id = %s",
            (event,),
        )
    }


def _pooled(history, at: datetime) -> float:
    """The pooling, independently: each market's latest value at or before `at` (30 days
    back at most), log-odds weighted by 0.9 × 0.5^(age / 60 min)."""
    latest: dict[tuple[str, str, str], tuple[datetime, float]] = {}
    for source, market, kind, value, moment in history:
        if at - CARRY < moment <= at:
            key = (source, market, kind)
            if key not in latest or latest[key] < (moment, value):
                latest[key] = (moment, value)
    num = den = 0.0
    for moment, value in latest.values():
        w = 0.9 * 0.5 ** ((at - moment).total_seconds() / 60 / HALF_LIFE)
        v = min(max(value, EPS), 1 - EPS)
        num, den = num + w * math.log(v / (1 - v)), den + w
    return 1 / (1 + math.exp(-num / den))


def _time_average(steps: list[tuple[datetime, float]], close: datetime) -> float:
    steps = sorted(steps)
    ends = [at for at, _ in steps[1:]] + [close]
    spans = [(end - at).total_seconds() for (at, _), end in zip(steps, ends, strict=True)]
    return sum(v * s for (_, v), s in zip(steps, spans, strict=True)) / sum(spans)


# Event 1: K from 40 days before close, P from 10 days (and an EXPERT read it does not score),
# L from 8 days; K's price after close never counts.
HISTORY = [
    ("kalshi", "kalshi:K", "MARKET_PRICE", 0.20, CLOSE - 40 * D),
    ("kalshi", "kalshi:K", "MARKET_PRICE", 0.50, CLOSE - 10 * D),
    ("kalshi", "kalshi:K", "MARKET_PRICE", 0.60, CLOSE - 2 * D),
    ("kalshi", "kalshi:K", "MARKET_PRICE", 0.70, CLOSE - 18 * H),
    ("kalshi", "kalshi:K", "MARKET_PRICE", 0.80, CLOSE - 6 * H),
    ("kalshi", "kalshi:K", "MARKET_PRICE", 0.99, CLOSE + H),
    ("polymarket", "polymarket:P", "MARKET_PRICE", 0.40, CLOSE - 10 * D),
    ("polymarket", "polymarket:P", "EXPERT", 0.10, CLOSE - 5 * D),
    ("polymarket", "polymarket:P", "MARKET_PRICE", 0.90, CLOSE - 3 * H),
    ("manifold", "manifold:L", "MARKET_PRICE", 0.30, CLOSE - 8 * D),
]
# Event 2: one market whose history starts 10 days before close.
SHORT = [
    ("kalshi", "kalshi:M", "MARKET_PRICE", 0.30, CLOSE - 10 * D),
    ("kalshi", "kalshi:M", "MARKET_PRICE", 0.60, CLOSE - 3 * D),
    ("kalshi", "kalshi:M", "MARKET_PRICE", 0.80, CLOSE - H),
]


def test_every_horizon_reads_the_series_as_defined(conn):
    event, short = _event(conn, "hand-built"), _event(conn, "short-history")
    _observe(conn, event, HISTORY)
    _observe(conn, short, SHORT)
    _settle(conn, event, "kalshi:K", "YES")
    _settle(conn, short, "kalshi:M", "NO")
    _resolve(conn)

    reads = _reads(conn, event)
    k = {"CLOSE": 0.80, "12H": 0.70, "1D": 0.60, "7D": 0.50, "30D": 0.20, "MIDPOINT": 0.20}
    k_at = {"CLOSE": -6 * H, "12H": -18 * H, "1D": -2 * D, "7D": -10 * D, "30D": -40 * D}
    k_at["MIDPOINT"] = -40 * D  # midway between the event's first read (-40 d) and close
    for horizon, p in k.items():
        assert reads[("kalshi:K", horizon)] == (p, CLOSE + k_at[horizon]), horizon
    k_average = (0.2 * 30 * 24 + 0.5 * 8 * 24 + 0.6 * 30 + 0.7 * 12 + 0.8 * 6) / (40 * 24)
    assert reads[("kalshi:K", "TIME_AVERAGE")] == (pytest.approx(k_average, abs=1e-12), CLOSE)
    # P: MARKET_PRICE only (its EXPERT read is pooled, not scored); nothing before -10 d.
    p_reads = {h: reads.get(("polymarket:P", h), (None,))[0] for h in HORIZONS}
    assert p_reads == {
        "CLOSE": 0.90,
        "12H": 0.40,
        "1D": 0.40,
        "7D": 0.40,
        "30D": None,
        "MIDPOINT": None,
        "TIME_AVERAGE": pytest.approx((0.4 * (240 - 3) + 0.9 * 3) / 240, abs=1e-12),
    }
    l_reads = {h: reads.get(("manifold:L", h), (None,))[0] for h in HORIZONS}
    assert l_reads == {h: None if h in ("30D", "MIDPOINT") else 0.30 for h in HORIZONS}

    # Pooled at the same moments, pooled independently; its close and 1/7/30-day reads are
    # the resolution's own columns.
    moments = {"CLOSE": 0 * H, "12H": 12 * H, "1D": D, "7D": 7 * D, "30D": 30 * D}
    moments["MIDPOINT"] = 20 * D
    for horizon, back in moments.items():
        seen = max(at for *_, at in HISTORY if at <= CLOSE - back)
        assert reads[("pooled", horizon)] == (
            pytest.approx(_pooled(HISTORY, seen), abs=1e-12),
            seen,
        ), horizon
    final = conn.execute(
        "SELECT final_probability_exact, probability_1d, probability_7d, probability_30d"
        " FROM prediction_resolutions WHERE event_id = %s",
        (event,),
    ).fetchone()
    assert final == tuple(reads[("pooled", h)][0] for h in ("CLOSE", "1D", "7D", "30D"))
    steps = sorted({at for *_, at in HISTORY if at <= CLOSE})
    pooled_average = _time_average([(at, _pooled(HISTORY, at)) for at in steps], CLOSE)
    assert reads[("pooled", "TIME_AVERAGE")][0] == pytest.approx(pooled_average, abs=1e-12)
    assert len(reads) == 7 + 7 + 5 + 5  # pooled, K, P, L

    # A history starting 10 days before close: no 30D read for any series, every other one.
    m = {
        "CLOSE": 0.8,
        "12H": 0.6,
        "1D": 0.6,
        "7D": 0.3,
        "MIDPOINT": 0.3,
        "TIME_AVERAGE": (0.3 * 7 * 24 + 0.6 * (3 * 24 - 1) + 0.8) / (10 * 24),
    }
    for series in ("kalshi:M", "pooled"):
        got = {h: p for (s, h), (p, _) in _reads(conn, short).items() if s == series}
        assert got == {h: pytest.approx(p, abs=1e-12) for h, p in m.items()}, series


def _scores(conn, event) -> dict[tuple[str, str], tuple]:
    return {
        (market or "pooled", horizon): (outcome, brier, log, relative)
        for market, horizon, outcome, brier, log, relative in conn.execute(
            "SELECT source_event_id, horizon, outcome, brier_score, log_score, relative_brier"
            " FROM v_market_scores WHERE event_id = %s",
            (event,),
        )
    }


def test_relative_brier_rescoring_and_an_overturned_outcome(conn):
    event = _event(conn, "relative")
    _observe(conn, event, HISTORY)
    _settle(conn, event, "kalshi:K", "YES")
    _resolve(conn)
    reads, scores = _reads(conn, event), _scores(conn, event)
    pooled_close = reads[("pooled", "CLOSE")][0]
    assert 0.4 < pooled_close < 0.9
    # P said 0.90 at close and beat the pooled forecast; L (0.30) did worse.
    outcome, brier, log, relative = scores[("polymarket:P", "CLOSE")]
    assert (outcome, brier, log) == (1, pytest.approx(0.01), pytest.approx(math.log(0.9)))
    assert relative == pytest.approx(0.01 - (1 - pooled_close) ** 2, abs=1e-12) and relative < 0
    assert scores[("manifold:L", "CLOSE")][3] == pytest.approx(
        0.49 - (1 - pooled_close) ** 2, abs=1e-12
    )
    assert scores[("manifold:L", "CLOSE")][3] > 0
    assert all(s[3] == 0 for (series, _), s in scores.items() if series == "pooled")

    # Late history for L (35 days before close): rescored, its rows replaced, never doubled.
    _observe(conn, event, [("manifold", "manifold:L", "MARKET_PRICE", 0.05, CLOSE - 35 * D)])
    assert mark_for_rescoring(conn, [event]) == 1
    _resolve(conn, NOW + H)
    rescored = _reads(conn, event)
    assert set(rescored) == set(reads) | {("manifold:L", "30D"), ("manifold:L", "MIDPOINT")}
    assert rescored[("manifold:L", "30D")] == (0.05, CLOSE - 35 * D)
    assert conn.execute(
        "SELECT count(*), count(DISTINCT (source, source_event_id, horizon)), min(scored_at)"
        " FROM prediction_market_scores WHERE event_id = %s",
        (event,),
    ).fetchone() == (len(rescored), len(rescored), NOW + H)

    # An overturned outcome rescores the view without a rewrite; AMBIGUOUS is not scored.
    conn.execute("UPDATE prediction_resolutions SET outcome = 'NO' WHERE event_id = %s", (event,))
    overturned = _scores(conn, event)
    assert overturned[("polymarket:P", "CLOSE")][:3] == (
        0,
        pytest.approx(0.81),
        pytest.approx(math.log(0.1)),
    )
    conn.execute(
        "UPDATE prediction_resolutions SET outcome = 'AMBIGUOUS' WHERE event_id = %s", (event,)
    )
    assert _scores(conn, event) == {}


def test_a_user_who_cannot_see_the_event_sees_none_of_its_scores(conn, db_url):
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    for user in (owner, stranger):
        conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, %s)", (user, f"{user}@example.com")
        )
    event = _event(conn, "private", created_by=owner)
    _observe(conn, event, SHORT)
    _settle(conn, event, "kalshi:M", "YES")
    _resolve(conn)
    count = "SELECT count(*) FROM v_market_scores WHERE event_id = %s"
    with as_user(db_url, owner) as mine:
        assert mine.execute(count, (event,)).fetchone() == (12,)  # 6 horizons × (M, pooled)
    with as_user(db_url, stranger) as theirs:
        assert theirs.execute(count, (event,)).fetchone() == (0,)
        assert theirs.execute("SELECT count(*) FROM prediction_market_scores").fetchone() == (0,)


def _sklearn_by_source(frame: dict[str, list[tuple[int, float]]]) -> dict[str, tuple]:
    out = {}
    for source, rows in frame.items():
        y = np.array([o for o, _ in rows])
        p = np.array([p for _, p in rows])
        clipped = np.clip(p, LOG_CLIP, 1 - LOG_CLIP)
        out[source] = (
            pytest.approx(brier_score_loss(y, p), abs=1e-12),
            pytest.approx(-log_loss(y, clipped, labels=[0, 1]), abs=1e-12),
        )
    return out


def test_view_scores_agree_with_scikit_learn_on_generated_markets(conn):
    rng = np.random.default_rng(20261001)
    sources = ("kalshi", "polymarket", "manifold", "metaculus")
    outcomes, closes = {}, defaultdict(list)  # closes[source]: (outcome, independent CLOSE read)
    for number in range(40):
        event = _event(conn, f"generated-{number}")
        outcome = "YES" if rng.random() < 0.5 else "NO"
        history = []
        for source in rng.choice(sources, size=int(rng.integers(2, 5)), replace=False):
            moments = sorted(
                CLOSE - timedelta(minutes=int(m)) for m in rng.integers(-120, 45 * 24 * 60, 6)
            )
            # Extremes included, so the view's log clipping matters.
            values = rng.choice([0.0, 1.0, *rng.random(6).round(4)], size=len(moments))
            history += [
                (str(source), f"{source}:{number}", "MARKET_PRICE", float(v), at)
                for v, at in zip(values, moments, strict=True)
            ]
            before = [(at, v) for at, v in zip(moments, values, strict=True) if at <= CLOSE]
            if before:
                closes[str(source)].append((int(outcome == "YES"), float(max(before)[1])))
        _observe(conn, event, history)
        _settle(conn, event, f"{history[0][0]}:{number}", outcome)
        outcomes[event] = int(outcome == "YES")
    _resolve(conn)

    rows = conn.execute(
        "SELECT event_id, source, horizon, probability, outcome, brier_score, log_score"
        " FROM v_market_scores"
    ).fetchall()
    assert {r[0] for r in rows} == set(outcomes)
    assert all(outcome == outcomes[event] for event, *_, outcome, _, _ in rows)
    by_source, view_means = defaultdict(list), defaultdict(lambda: [[], []])
    for _, source, horizon, p, outcome, brier, log in rows:
        by_source[(source, horizon)].append((outcome, p))
        view_means[(source, horizon)][0].append(brier)
        view_means[(source, horizon)][1].append(log)
    means = {key: (np.mean(b), np.mean(lg)) for key, (b, lg) in view_means.items()}
    assert means == _sklearn_by_source(by_source)
    # The markets' CLOSE reads are the last value at or before close, computed here.
    close_means = {s: means[(s, "CLOSE")] for s in closes}
    assert close_means == _sklearn_by_source(closes)
    assert {h for _, h in means} == set(HORIZONS)


@pytest.mark.parametrize(
    "recording", [manifold_recording(), predictit_recording()], ids=lambda r: r.platform
)
def test_real_recordings_score_as_scikit_learn_says(conn, landing, recording):
    """MANIFOLD and PREDICTIT (tests/calibration/test_real_recordings.py cites the sources):
    each market's CLOSE read is its last recorded price at or before close, and the view's
    per-source means are scikit-learn's."""
    owner = uuid.uuid4()
    conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'scores@example.com')", (owner,))
    feed_id = create_recording_feed(conn, recording, owner=owner)
    at = datetime(2026, 11, 23, 9, tzinfo=UTC)
    files = [("history.csv", recording.history_csv()), ("listing.csv", recording.listing_csv())]
    upload_recording(conn, landing, feed_id, files, now=lambda: at)
    [report] = validate_window(conn, landing, hour_window(at), now=at, feed_ids=[feed_id])
    assert report.ok, report.error
    _resolve(conn, at + timedelta(minutes=30))

    final = recording.final_prices()
    rows = conn.execute(
        "SELECT source_event_id, probability, outcome, brier_score, log_score"
        " FROM v_market_scores WHERE source <> 'pooled' AND horizon = 'CLOSE'"
    ).fetchall()
    # An uploaded market is named within its feed.
    reads = {market.removeprefix(f"feed:{feed_id}:"): p for market, p, *_ in rows}
    assert len(reads) == len(rows) == len(final)
    assert reads == {m: pytest.approx(v, abs=1e-12) for m, v in final["value"].items()}
    y = (final["resolution"] == "YES").to_numpy(dtype=int)
    p = final["value"].to_numpy()
    assert (np.mean([r[3] for r in rows]), np.mean([r[4] for r in rows])) == (
        pytest.approx(brier_score_loss(y, p), abs=1e-12),
        pytest.approx(-log_loss(y, np.clip(p, LOG_CLIP, 1 - LOG_CLIP), labels=[0, 1]), abs=1e-12),
    )
