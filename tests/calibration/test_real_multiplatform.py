"""The same questions forecast on two platforms, from public recordings (demo/recordings/
SOURCES.md, section 3), through the product's own path: two `feeds upload` feeds mapped to one
event per question, stage 2, resolutions. Each platform's Brier and the pooled one are
computed here again, independently, from the raw recorded files.

Sources:
- PREDICTIT: k5cents/predelect@cc973d5878daeeedd4f6e3b15912f11277817252,
  2018/data/DailyMarketData.zip — PredictIt's daily closes of its 2018 Senate markets.
- FIVETHIRTYEIGHT: k5cents/models-markets@47fd763f01de196586ca6e8f2ecb221e873b62ed,
  data/raw/models/senate_seat_forecast.csv (gzipped here) — FiveThirtyEight's daily 2018
  Senate forecast, each candidate's win probability; and data/raw/results/
  forecast_results_2018.csv — FiveThirtyEight's record of who won each race.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from predict_pipeline.calibration.resolutions import resolve_from_markets
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.defs.snapshots import event_history
from predict_pipeline.demo.recordings import (
    SENATE_2018_DIR,
    create_shared_feeds,
    senate_2018_recording,
    upload_recording,
)
from predict_pipeline.ingestion.pushed import hour_window
from predict_pipeline.signals.stage import validate_window

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SENATE = senate_2018_recording()
CLOSE = datetime(2018, 11, 6, 12, tzinfo=UTC)  # election day, noon UTC
HORIZONS = {"CLOSE": timedelta(0), "1D": timedelta(days=1), "7D": timedelta(days=7)}
END_OF_DAY = timedelta(hours=23, minutes=59)


def _raw_prices() -> pd.DataFrame:
    """question_id, platform, observed_at, value: read straight from the recorded files."""
    with zipfile.ZipFile(SENATE_2018_DIR / "DailyMarketData.zip") as archive:
        text = archive.read("DailyMarketData.csv").decode("utf-16")
    predictit = pd.read_csv(io.StringIO(text), sep="|", dtype=str, keep_default_na=False)
    predictit["market"] = (
        predictit["MarketId"] + ":" + predictit["ContractSymbol"].replace("n/a", "YES")
    )
    forecast = pd.read_csv(SENATE_2018_DIR / "senate_seat_forecast.csv.gz", dtype=str)
    forecast = forecast[forecast["model"] == "classic"]
    forecast["market"] = forecast["state"] + "-" + forecast["class"] + ":" + forecast["candidate"]
    questions = SENATE.questions
    frames = []
    for platform, rows, day, value in (
        ("predictit", predictit, "Date", "ClosePrice"),
        ("fivethirtyeight", forecast, "forecastdate", "win_probability"),
    ):
        question = rows["market"].map(questions.set_index(platform)["question_id"])
        frames.append(
            pd.DataFrame(
                {
                    "question_id": question,
                    "platform": platform,
                    "observed_at": pd.to_datetime(rows[day], utc=True) + END_OF_DAY,
                    "value": rows[value].astype(float),
                }
            ).dropna(subset=["question_id"])
        )
    return pd.concat(frames, ignore_index=True)


RAW = _raw_prices()


def _outcomes() -> pd.Series:
    """PredictIt pays 1.00 or 0.00: a contract's last recorded close says how it settled."""
    last = RAW[RAW["platform"] == "predictit"].sort_values("observed_at").groupby("question_id")
    final = last["value"].last()
    assert ((final >= 0.95) | (final <= 0.05)).all()
    return (final >= 0.95).astype(float)


def _election_results() -> pd.Series:
    """question_id -> YES/NO from FiveThirtyEight's results, for the questions whose candidate
    is the only one of their side in the race (independents count with the Democrats, as
    FiveThirtyEight counts them): California's two Democrats, Maine's King and Democrat, and
    Massachusetts' Warren and independent are left out."""
    forecast = pd.read_csv(SENATE_2018_DIR / "senate_seat_forecast.csv.gz", dtype=str)
    forecast = forecast[(forecast["model"] == "classic") & forecast["party"].notna()]
    forecast = forecast.drop_duplicates(["state", "class", "candidate"])
    forecast["side"] = forecast["party"].replace({"I": "D"})
    forecast["market"] = forecast["state"] + "-" + forecast["class"] + ":" + forecast["candidate"]
    forecast["race"] = forecast["state"] + "-S" + forecast["class"]
    sole = forecast.groupby(["race", "side"]).filter(lambda g: len(g) == 1)
    results = pd.read_csv(SENATE_2018_DIR / "forecast_results_2018.csv", dtype=str)
    results = results[(results["branch"] == "Senate") & (results["version"] == "classic")]
    won = sole.merge(results[["race", "Democrat_Won", "Republican_Won"]], on="race")
    won["won"] = won["Democrat_Won"].where(won["side"] == "D", won["Republican_Won"]) == "1"
    questions = SENATE.questions.merge(won, left_on="fivethirtyeight", right_on="market")
    return pd.Series(
        questions["won"].map({True: "YES", False: "NO"}).to_numpy(),
        index=questions["question_id"],
    ).sort_index()


def _at(cutoff: datetime) -> pd.DataFrame:
    """Each question's last value per platform at or before cutoff, and the pooled one as the
    product defines it: at the last observation t*, log-odds of each market's value clipped
    to [0.001, 0.999], weighted by 0.5 ** ((t* - t_i) / 60 min)."""
    seen = RAW[RAW["observed_at"] <= cutoff].sort_values("observed_at")
    last = seen.groupby(["question_id", "platform"]).tail(1)
    wide = last.pivot(index="question_id", columns="platform", values="value")
    moment = last.pivot(index="question_id", columns="platform", values="observed_at")
    t_star = moment.max(axis=1)
    age = moment.apply(lambda column: (t_star - column).dt.total_seconds() / 60)
    weight = 0.5 ** (age / 60)
    clipped = wide.clip(0.001, 0.999)
    logit = (weight * np.log(clipped / (1 - clipped))).sum(axis=1) / weight.sum(axis=1)
    wide["pooled"] = 1 / (1 + np.exp(-logit))
    wide["t_star"] = t_star
    return wide


def _brier(probability: pd.Series, outcome: pd.Series) -> float:
    return float(((probability - outcome.reindex(probability.index)) ** 2).mean())


@pytest.fixture
def loaded(conn, landing):
    owner = uuid.uuid4()
    conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'senate@example.com')", (owner,))
    feed_ids = create_shared_feeds(conn, SENATE, owner=owner)
    for feed_id, recording in zip(feed_ids, SENATE.platforms, strict=True):
        files = [("history.csv", recording.history_csv()), ("listing.csv", recording.listing_csv())]
        upload_recording(conn, landing, feed_id, files, now=lambda: NOW)
    reports = validate_window(conn, landing, hour_window(NOW), now=NOW, feed_ids=feed_ids)
    assert [r.ok for r in reports] == [True, True], [r.error for r in reports]
    resolve_from_markets(conn, now=NOW + timedelta(minutes=30))
    return owner, feed_ids


def _events(conn, feed_ids) -> dict[str, dict[str, str]]:
    """platform -> {market id -> event id}, as the feeds map them."""
    rows = conn.execute(
        "SELECT name, manual_event_mappings FROM prediction_data_feeds WHERE id = ANY(%s)",
        (feed_ids,),
    ).fetchall()
    platform = {r.name: r.platform for r in SENATE.platforms}
    return {platform[name]: mappings for name, mappings in rows}


def test_one_event_per_question_resolved_as_predictit_settled(conn, loaded):
    owner, feed_ids = loaded
    # Created once: asked again, the same feeds and no new events.
    assert create_shared_feeds(conn, SENATE, owner=owner) == feed_ids
    assert conn.execute(
        "SELECT count(*) FROM prediction_events WHERE created_by = %s", (owner,)
    ).fetchone() == (28,)
    events = _events(conn, feed_ids)
    questions = SENATE.questions
    assert len(questions) == 28
    # Both platforms' markets of a question land in the same event, and no two share one.
    predictit = questions["predictit"].map(events["predictit"])
    fivethirtyeight = questions["fivethirtyeight"].map(events["fivethirtyeight"])
    assert (predictit == fivethirtyeight).all() and predictit.nunique() == 28
    outcome = dict(
        conn.execute(
            "SELECT event_id::text, outcome FROM prediction_resolutions WHERE event_id = ANY(%s)",
            (list(predictit.map(uuid.UUID)),),
        ).fetchall()
    )
    expected = _outcomes().map({1.0: "YES", 0.0: "NO"})
    pipeline = pd.Series(predictit.map(outcome).to_numpy(), index=questions["question_id"])
    assert pipeline.sort_index().to_dict() == expected.sort_index().to_dict()
    assert (expected == "YES").sum() == 18
    # And as the elections went, by FiveThirtyEight's record of which party won each race.
    elections = _election_results()
    assert len(elections) == 25
    assert elections.to_dict() == expected.reindex(elections.index).to_dict()
    # Every event holds each platform's whole series.
    counts = conn.execute(
        "SELECT feed_id, count(*), count(DISTINCT event_id) FROM prediction_signals"
        " WHERE feed_id = ANY(%s) GROUP BY feed_id",
        (feed_ids,),
    ).fetchall()
    by_feed = {feed: (n, distinct) for feed, n, distinct in counts}
    for feed_id, recording in zip(feed_ids, SENATE.platforms, strict=True):
        assert by_feed[feed_id] == (len(recording.history.drop_duplicates()), 28)


def test_each_platform_and_pooled_scored_on_the_same_events(conn, loaded):
    _, feed_ids = loaded
    events = _events(conn, feed_ids)
    questions = SENATE.questions.set_index("question_id")
    event_of = questions["predictit"].map(events["predictit"])
    question_of = {event: question for question, event in event_of.items()}
    outcome = _outcomes()
    # Each platform's last value at or before close, as the pipeline holds it.
    held = conn.execute(
        """SELECT DISTINCT ON (s.event_id, s.feed_id) s.event_id::text, s.feed_id,
                  coalesce((s.raw_data->>'value_exact')::float8, s.value::float8), s.fetched_at
           FROM prediction_signals s
           WHERE s.feed_id = ANY(%s) AND s.signal_type = 'MARKET_PRICE' AND s.fetched_at <= %s
           ORDER BY s.event_id, s.feed_id, s.fetched_at DESC""",
        (feed_ids, CLOSE),
    ).fetchall()
    platform_of = dict(zip(feed_ids, (r.platform for r in SENATE.platforms), strict=True))
    pipeline = pd.DataFrame(
        [(question_of[e], platform_of[f], v) for e, f, v, _ in held],
        columns=["question_id", "platform", "value"],
    ).pivot(index="question_id", columns="platform", values="value")
    at_close = _at(CLOSE)
    for platform in ("predictit", "fivethirtyeight"):
        assert np.allclose(pipeline[platform], at_close[platform].reindex(pipeline.index))
    scores = conn.execute(
        """SELECT r.event_id::text, r.final_probability_exact, r.final_observed_at,
                  r.probability_1d, r.probability_7d
           FROM prediction_resolutions r WHERE r.event_id = ANY(%s)""",
        (list(event_of.map(uuid.UUID)),),
    ).fetchall()
    resolved = pd.DataFrame(
        [(question_of[e], p, at, p1, p7) for e, p, at, p1, p7 in scores],
        columns=["question_id", "CLOSE", "observed_at", "1D", "7D"],
    ).set_index("question_id")
    assert len(resolved) == 28
    # The pooled forecast read at close and a day and a week before it is the independent one.
    for horizon, back in HORIZONS.items():
        independent = _at(CLOSE - back)
        assert np.allclose(resolved[horizon], independent["pooled"].reindex(resolved.index))
    assert (resolved["observed_at"] == at_close["t_star"].reindex(resolved.index)).all()
    assert (resolved["observed_at"] == datetime(2018, 11, 5, 23, 59, tzinfo=UTC)).all()

    # Over the same 28 events: each platform's Brier and the pooled one, at close.
    brier = {name: _brier(at_close[name], outcome) for name in ("predictit", "fivethirtyeight")}
    brier["pooled"] = _brier(resolved["CLOSE"], outcome)
    assert abs(brier["pooled"] - _brier(at_close["pooled"], outcome)) < 1e-12
    assert all(0 < b < 0.25 for b in brier.values()), brier


def test_the_daily_snapshot_pools_both_platforms(conn, loaded, db_url, dagster_instance):
    """The event_history partition of the eve of the election snapshots every question with
    the pool of both platforms' values of that day."""
    _, feed_ids = loaded
    events = _events(conn, feed_ids)
    questions = SENATE.questions.set_index("question_id")
    event_of = questions["predictit"].map(events["predictit"])
    result = dg.materialize(
        [event_history],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
        partition_key="2018-11-05",
    )
    assert result.success
    rows = conn.execute(
        "SELECT event_id::text, probability::float8, signal_count FROM prediction_snapshots"
        " WHERE event_id = ANY(%s) AND snapshot_at = %s",
        (list(event_of.map(uuid.UUID)), datetime(2018, 11, 6, tzinfo=UTC)),
    ).fetchall()
    question_of = {event: question for question, event in event_of.items()}
    snapshot = pd.DataFrame(
        [(question_of[e], p, n) for e, p, n in rows], columns=["question_id", "p", "signals"]
    ).set_index("question_id")
    assert len(snapshot) == 28
    # Both values were observed at 23:59: equal weights, the pool of the two, to 4 decimals.
    pooled = _at(datetime(2018, 11, 6, tzinfo=UTC))["pooled"].reindex(snapshot.index)
    assert (snapshot["p"] - pooled).abs().max() <= 0.00005 + 1e-12
    assert (snapshot["signals"] == 2).all()


def test_v_market_scores_per_platform_equals_the_independent_briers(conn, loaded):
    """v_market_scores (sql/0133): over the same 28 events, each platform's mean Brier at
    CLOSE, 1D and 7D is the one computed from the raw files, and pooled's is the pool's."""
    _, feed_ids = loaded
    events = _events(conn, feed_ids)
    event_ids = [uuid.UUID(e) for e in events["predictit"].values()]
    rows = conn.execute(
        """SELECT v.source, v.source_event_id, v.horizon, v.brier_score, v.relative_brier
           FROM v_market_scores v WHERE v.event_id = ANY(%s)
             AND v.horizon IN ('CLOSE', '1D', '7D')""",
        (event_ids,),
    ).fetchall()
    scores = pd.DataFrame(rows, columns=["source", "market", "horizon", "brier", "relative"])
    # An upload feed's markets are named `feed:<feed id>:<market id>` at source `upload`.
    platform_of = {str(f): r.platform for f, r in zip(feed_ids, SENATE.platforms, strict=True)}
    feed = scores["market"].str.extract(r"^feed:([0-9a-f-]{36}):")[0]
    scores["series"] = feed.map(platform_of).where(scores["source"] != "pooled", "pooled")
    assert scores["series"].notna().all()
    assert set(scores.loc[scores["source"] != "pooled", "source"]) == {"upload"}
    counts = scores.groupby(["horizon", "series"]).size()
    assert (counts == 28).all() and len(counts) == 9
    mean = scores.groupby(["horizon", "series"])["brier"].mean()
    outcome = _outcomes()
    for horizon, back in HORIZONS.items():
        independent = _at(CLOSE - back)
        for series in ("predictit", "fivethirtyeight", "pooled"):
            expected = _brier(independent[series], outcome)
            assert abs(mean[(horizon, series)] - expected) < 1e-9, (horizon, series)
    # Each platform's Brier relative to pooled on the same event, averaged, is the difference.
    relative = scores[scores["series"] != "pooled"].groupby(["horizon", "series"])["relative"]
    gap = mean.unstack()
    for (horizon, series), value in relative.mean().items():
        assert abs(value - (gap.loc[horizon, series] - gap.loc[horizon, "pooled"])) < 1e-9
