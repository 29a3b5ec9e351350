"""Recorded real resolved-market history (demo/recordings, sources in its SOURCES.md), turned
into the uploads a user would make with `predict-pipeline feeds upload`.

Each recording becomes two upload files for one upload feed: the **history** (one
MARKET_PRICE row per recorded price, at the time it was observed) and the **listing** (one
row per market as the recording lists it: its last price, title, close time and, where the
market resolved YES or NO, its resolution). Events are created one per market and mapped to
it (`manual_event_mappings`), so the same data gives the same events whatever order the files
arrive in. The files are read as they were recorded; what is derived (a title from a URL, a
resolution from a final price) is derived here and documented in SOURCES.md.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.ingestion.pushed import PushReport, land_upload
from predict_pipeline.ingestion.store import load_feed

RECORDINGS_DIR = PROJECT_ROOT / "demo" / "recordings"
UPLOAD_COLUMNS = (
    "source_event_id",
    "signal_type",
    "value",
    "fetched_at",
    "title",
    "close_time",
    "status",
    "resolution",
)


@dataclass(frozen=True, slots=True)
class RecordedMarket:
    market_id: str
    title: str
    close_time: datetime
    resolution: str | None  # YES or NO; None: not resolved to a side in the recording


@dataclass(frozen=True, slots=True)
class Recording:
    name: str  # the feed's name
    platform: str
    source: str  # repo@commit:path, as SOURCES.md cites it
    markets: tuple[RecordedMarket, ...]
    history: pd.DataFrame  # market_id, fetched_at (UTC), value: every recorded price
    listed: pd.DataFrame  # market_id, fetched_at, value: the listing's price of each market

    def history_csv(self, market_ids: Iterable[str] | None = None) -> bytes:
        """Upload CSV of the recorded prices (of these markets only, if given)."""
        rows = self.history
        if market_ids is not None:
            rows = rows[rows["market_id"].isin(set(market_ids))]
        return _csv(
            {
                "source_event_id": market_id,
                "signal_type": "MARKET_PRICE",
                "value": repr(float(value)),  # repr: the float exactly as recorded
                "fetched_at": at.isoformat(),
            }
            for market_id, at, value in rows[["market_id", "fetched_at", "value"]].itertuples(
                index=False
            )
        )

    def listing_csv(self) -> bytes:
        """Upload CSV of the markets as listed: last price, title, close, resolution."""
        by_id = {m.market_id: m for m in self.markets}
        return _csv(
            {
                "source_event_id": market_id,
                "signal_type": "MARKET_PRICE",
                "value": repr(float(value)),
                "fetched_at": at.isoformat(),
                "title": by_id[market_id].title,
                "close_time": by_id[market_id].close_time.isoformat(),
                "status": "resolved" if by_id[market_id].resolution else "closed",
                "resolution": by_id[market_id].resolution or "",
            }
            for market_id, at, value in self.listed[
                ["market_id", "fetched_at", "value"]
            ].itertuples(index=False)
        )

    def final_prices(self) -> pd.DataFrame:
        """Independently of the pipeline: each market's last recorded price at or before its
        close (latest observation; of equal times the higher price), with its outcome."""
        prices = pd.concat([self.history, self.listed], ignore_index=True)
        close = pd.Series({m.market_id: m.close_time for m in self.markets})
        prices = prices[
            prices["fetched_at"]
            <= prices["market_id"].map(close).astype(prices["fetched_at"].dtype)
        ]
        last = prices.sort_values(["market_id", "fetched_at", "value"]).groupby("market_id").tail(1)
        outcome = pd.Series({m.market_id: m.resolution for m in self.markets})
        last = last.assign(resolution=last["market_id"].map(outcome))
        return last[last["resolution"].isin(["YES", "NO"])].set_index("market_id")


def _csv(rows: Iterable[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=UPLOAD_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _ms(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values.astype("int64"), unit="ms", utc=True)


# Manifold's mirror of Metaculus questions, recorded 2023-02-24 (commit time of the recording:
# the listing was fetched no later than that).
MANIFOLD_DIR = RECORDINGS_DIR / "manifold-metaculusbot"
MANIFOLD_LISTED_AT = datetime(2023, 2, 24, 10, 14, 51, tzinfo=UTC)
_METACULUS_URL = re.compile(r"metaculus\.com/questions/(\d+)/([\w-]+)")


def manifold_recording(directory: Path = MANIFOLD_DIR) -> Recording:
    markets_csv = pd.read_csv(directory / "metaculus-binary-markets.csv", dtype={"id": str})
    bets = pd.read_csv(directory / "metaculus-binary-bets.csv", dtype={"contractId": str})
    markets = []
    for row in markets_csv.itertuples(index=False):
        found = _METACULUS_URL.search(str(row.description))
        title = (
            f"{found.group(2).replace('-', ' ').strip().capitalize()} "
            f"(Metaculus {found.group(1)} on Manifold)"
            if found
            else f"Manifold market {row.id}"
        )
        # Trading ends at the close or at an earlier resolution, whichever comes first.
        close = min(int(row.closeTime), int(row.resolutionTime))
        markets.append(
            RecordedMarket(
                market_id=row.id,
                title=title,
                close_time=datetime.fromtimestamp(close / 1000, tz=UTC),
                # MKT resolves to a probability, not a side: left unresolved here.
                resolution=row.resolution if row.resolution in ("YES", "NO") else None,
            )
        )
    history = pd.DataFrame(
        {
            "market_id": bets["contractId"],
            "fetched_at": _ms(bets["createdTime"]),
            "value": bets["probAfter"].astype(float),
        }
    )
    listed = pd.DataFrame(
        {
            "market_id": markets_csv["id"],
            "fetched_at": pd.Timestamp(MANIFOLD_LISTED_AT),
            "value": markets_csv["probability"].astype(float),
        }
    )
    return Recording(
        name="Recorded: Manifold MetaculusBot markets (2022)",
        platform="manifold",
        source="nikosbosse/Metaculus-data-analyses@12c53a77f8890b731901ef11034bef8e5a4bb81d"
        ":comparison-manifold/manifold-data/",
        markets=tuple(markets),
        history=history,
        listed=listed,
    )


# PredictIt's daily prices of the 2016 US election markets.
PREDICTIT_DIR = RECORDINGS_DIR / "predictit-2016"
# The markets are about the 8 November 2016 election: scored as of that day, 12:00 UTC.
PREDICTIT_CLOSE = datetime(2016, 11, 8, 12, tzinfo=UTC)
# A final daily close at or beyond these says how the contract settled (1.00 / 0.00 payout).
PREDICTIT_SETTLED_YES, PREDICTIT_SETTLED_NO = 0.95, 0.05


def _predictit_daily(archive_path: Path) -> pd.DataFrame:
    """PredictIt's DailyMarketData (UTF-16, pipe-separated) with market_id, fetched_at and value
    added: one row per contract and day, sorted by market and day."""
    with zipfile.ZipFile(archive_path) as archive:
        text = archive.read("DailyMarketData.csv").decode("utf-16")
    daily = pd.read_csv(io.StringIO(text), sep="|", dtype=str, keep_default_na=False)
    contract = daily["ContractSymbol"].where(daily["ContractSymbol"] != "n/a", "")
    daily["market_id"] = daily["MarketId"] + ":" + contract.where(contract != "", "YES")
    # A day's close price, stamped at the end of its (UTC) day.
    daily["fetched_at"] = pd.to_datetime(daily["Date"], utc=True) + timedelta(hours=23, minutes=59)
    daily["value"] = daily["ClosePrice"].astype(float)
    return daily.sort_values(["market_id", "fetched_at"])


def _settled(last_close: float) -> str | None:
    if last_close >= PREDICTIT_SETTLED_YES:
        return "YES"
    return "NO" if last_close <= PREDICTIT_SETTLED_NO else None


def predictit_recording(directory: Path = PREDICTIT_DIR) -> Recording:
    daily = _predictit_daily(directory / "DailyMarketData.zip")
    last = daily.groupby("market_id").tail(1)
    markets = []
    for row in last.itertuples(index=False):
        name = str(row.MarketName)
        contract_name = str(row.ContractName)
        title = name if contract_name == "n/a" else f"{name} — {contract_name}"
        markets.append(RecordedMarket(row.market_id, title, PREDICTIT_CLOSE, _settled(row.value)))
    return Recording(
        name="Recorded: PredictIt 2016 election markets",
        platform="predictit",
        source="k5cents/predelect@cc973d5878daeeedd4f6e3b15912f11277817252"
        ":2016/data/DailyMarketData.zip",
        markets=tuple(markets),
        history=daily[["market_id", "fetched_at", "value"]].reset_index(drop=True),
        listed=last[["market_id", "fetched_at", "value"]].reset_index(drop=True),
    )


# The 2018 US Senate races as PredictIt priced them and FiveThirtyEight forecast them: the same
# questions on two platforms, each with its daily history (SOURCES.md, section 3).
SENATE_2018_DIR = RECORDINGS_DIR / "senate-2018"
# Election day, 12:00 UTC: each platform is scored on its last daily value before it.
SENATE_2018_CLOSE = datetime(2018, 11, 6, 12, tzinfo=UTC)
FIVETHIRTYEIGHT_MODEL = "classic"  # the version FiveThirtyEight led with in 2018
_NAME_SUFFIX = re.compile(r",?\s+(Jr\.|Sr\.|II|III|IV)$")


@dataclass(frozen=True, slots=True)
class SharedRecording:
    """Questions asked on several platforms: one recording per platform, and per question
    (`questions`: question_id, title, close_time) the market it is on each platform (one
    column per platform, named by `Recording.platform`)."""

    name: str
    platforms: tuple[Recording, ...]
    questions: pd.DataFrame


def _surname(names: pd.Series) -> pd.Series:
    return names.str.replace(_NAME_SUFFIX, "", regex=True).str.split().str[-1]


def senate_2018_recording(directory: Path = SENATE_2018_DIR) -> SharedRecording:
    """PredictIt's 2018 Senate contracts that FiveThirtyEight forecast too, matched to the
    candidate FiveThirtyEight gave a win probability: a re-election contract to the incumbent
    of that surname, a party contract to the state's one candidate of that party (two of a
    party, as in Mississippi's special election: not matched). A candidate asked about twice
    (Casey, and Pennsylvania's Democrat) keeps the earlier-listed market."""
    daily = _predictit_daily(directory / "DailyMarketData.zip")
    daily = daily[daily["MarketName"].str.contains("U.S. Senate", regex=False)]
    contracts = daily.groupby("market_id").tail(1).copy()
    contracts["surname"] = contracts["MarketName"].str.extract(r"^Will (.+) be re-elected")[0]
    contracts["surname"] = _surname(contracts["surname"].fillna(""))
    contracts["state"] = contracts["ContractSymbol"].str.extract(r"([A-Z]{2})SEN")[0]
    contracts["special"] = contracts["MarketName"].str.contains("special election", regex=False)
    contracts["party"] = contracts["ContractName"].map(
        {"Republican": "R", "Democratic": "D", "Democratic or DFL": "D"}
    )

    forecast = pd.read_csv(directory / "senate_seat_forecast.csv.gz", dtype={"class": str})
    forecast = forecast[forecast["model"] == FIVETHIRTYEIGHT_MODEL].copy()
    forecast["market_id"] = (
        forecast["state"] + "-" + forecast["class"] + ":" + forecast["candidate"].astype(str)
    )
    candidates = forecast.drop_duplicates("market_id").copy()
    candidates["surname"] = _surname(candidates["candidate"].astype(str))
    incumbents = candidates[candidates["incumbent"]]
    if incumbents["surname"].duplicated().any():
        raise ValueError("two FiveThirtyEight incumbents share a surname: match by state")
    by_name = contracts.merge(
        incumbents[["surname", "market_id"]], on="surname", suffixes=("", "_538")
    )
    sole = candidates.groupby(["state", "special", "party"]).filter(lambda g: len(g) == 1)
    by_party = contracts.dropna(subset=["party"]).merge(
        sole[["state", "special", "party", "market_id"]],
        on=["state", "special", "party"],
        suffixes=("", "_538"),
    )
    matched = (
        pd.concat([by_name, by_party], ignore_index=True)
        .assign(listed=lambda m: m["MarketId"].astype(int))
        .sort_values(["listed", "market_id"])
        .drop_duplicates("market_id_538")
        .sort_values("market_id")
        .reset_index(drop=True)
    )
    title = matched["MarketName"].where(
        matched["ContractName"] == "n/a", matched["MarketName"] + " — " + matched["ContractName"]
    )
    questions = pd.DataFrame(
        {
            "question_id": matched["market_id"],
            "title": title,
            "close_time": SENATE_2018_CLOSE,
            "predictit": matched["market_id"],
            "fivethirtyeight": matched["market_id_538"],
        }
    )

    history = daily[daily["market_id"].isin(questions["predictit"])]
    predictit = Recording(
        name="Recorded: PredictIt 2018 Senate markets (also forecast by FiveThirtyEight)",
        platform="predictit",
        source="k5cents/predelect@cc973d5878daeeedd4f6e3b15912f11277817252"
        ":2018/data/DailyMarketData.zip",
        markets=tuple(
            RecordedMarket(m, t, SENATE_2018_CLOSE, _settled(v))
            for m, t, v in zip(questions["predictit"], title, matched["value"], strict=True)
        ),
        history=history[["market_id", "fetched_at", "value"]].reset_index(drop=True),
        listed=history.groupby("market_id")
        .tail(1)[["market_id", "fetched_at", "value"]]
        .reset_index(drop=True),
    )

    series = forecast[forecast["market_id"].isin(questions["fivethirtyeight"])]
    series = pd.DataFrame(
        {
            "market_id": series["market_id"],
            # A day's forecast, stamped at the end of its day as PredictIt's closes are.
            "fetched_at": pd.to_datetime(series["forecastdate"], utc=True)
            + timedelta(hours=23, minutes=59),
            "value": series["win_probability"].astype(float),
        }
    ).sort_values(["market_id", "fetched_at"])
    fivethirtyeight = Recording(
        name="Recorded: FiveThirtyEight 2018 Senate forecast (classic), PredictIt's questions",
        platform="fivethirtyeight",
        source="k5cents/models-markets@47fd763f01de196586ca6e8f2ecb221e873b62ed"
        ":data/raw/models/senate_seat_forecast.csv",
        # A forecast does not settle: its questions resolve as PredictIt's markets settled.
        markets=tuple(
            RecordedMarket(m, t, SENATE_2018_CLOSE, None)
            for m, t in zip(questions["fivethirtyeight"], title, strict=True)
        ),
        history=series.reset_index(drop=True),
        listed=series.groupby("market_id").tail(1).reset_index(drop=True),
    )
    return SharedRecording(
        name="2018 US Senate: PredictIt and FiveThirtyEight",
        platforms=(predictit, fivethirtyeight),
        questions=questions,
    )


def create_shared_feeds(
    conn: psycopg.Connection,
    shared: SharedRecording,
    *,
    owner: uuid.UUID,
    category_slug: str | None = "geopolitics",
) -> list[uuid.UUID]:
    """One private event per shared question, and one upload feed per platform mapping its
    market of each question to that event, so the event pools every platform. Found again by
    the feeds' names. Set-based: one statement for the events, one per feed."""
    names = [r.name for r in shared.platforms]
    found: dict[str, uuid.UUID] = dict(
        conn.execute(
            "SELECT name, id FROM prediction_data_feeds WHERE user_id = %s AND name = ANY(%s)",
            (owner, names),
        ).fetchall()
    )
    if len(found) == len(names):
        return [found[name] for name in names]
    prefix = f"recorded-{uuid.uuid4().hex[:8]}-"
    questions = shared.questions
    slugs = [prefix + re.sub(r"[^a-z0-9]+", "-", q.lower()) for q in questions["question_id"]]
    events = conn.execute(
        """INSERT INTO prediction_events
             (category_id, title, slug, resolution_date, tags, is_public, created_by)
           SELECT (SELECT id FROM prediction_categories WHERE slug = %s), q.title, q.slug,
                  q.close, %s, false, %s
           FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS q(slug, title, close)
           RETURNING slug, id""",
        (
            category_slug,
            ["recorded", *(r.platform for r in shared.platforms)],
            owner,
            slugs,
            list(questions["title"]),
            [at.to_pydatetime() for at in pd.to_datetime(questions["close_time"], utc=True)],
        ),
    ).fetchall()
    by_slug: dict[str, uuid.UUID] = dict(events)
    feed_ids = []
    for recording in shared.platforms:
        feed_id = uuid.uuid4()
        mappings = {
            market: str(by_slug[slug])
            for market, slug in zip(questions[recording.platform], slugs, strict=True)
        }
        conn.execute(
            """INSERT INTO prediction_data_feeds
                 (id, source_id, user_id, name, config, event_mapping_mode,
                  manual_event_mappings)
               SELECT %s, s.id, %s, %s, %s, 'manual', %s FROM prediction_data_sources s
               WHERE s.source_id = 'upload'""",
            (feed_id, owner, recording.name, Jsonb({}), Jsonb(mappings)),
        )
        feed_ids.append(feed_id)
    return feed_ids


def recordings() -> list[Recording]:
    return [manifold_recording(), predictit_recording()]


def create_recording_feed(
    conn: psycopg.Connection,
    recording: Recording,
    *,
    owner: uuid.UUID,
    category_slug: str | None = "geopolitics",
) -> uuid.UUID:
    """The recording's events (one per market, private to the owner) and its upload feed,
    mapped to them; found again by the feed's name. Set-based: one statement each."""
    found = conn.execute(
        "SELECT id FROM prediction_data_feeds WHERE user_id = %s AND name = %s",
        (owner, recording.name),
    ).fetchone()
    if found is not None:
        return found[0]
    feed_id = uuid.uuid4()
    events = conn.execute(
        """INSERT INTO prediction_events
             (category_id, title, slug, resolution_date, tags, is_public, created_by)
           SELECT (SELECT id FROM prediction_categories WHERE slug = %s), m.title,
                  'recorded-' || %s || '-' || m.slug_id, m.close, %s, false, %s
           FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS m(slug_id, title, close)
           RETURNING slug, id""",
        (
            category_slug,
            feed_id.hex[:8],
            ["recorded", recording.platform],
            owner,
            [re.sub(r"[^a-z0-9]+", "-", m.market_id.lower()) for m in recording.markets],
            [m.title for m in recording.markets],
            [m.close_time for m in recording.markets],
        ),
    ).fetchall()
    by_slug: dict[str, uuid.UUID] = dict(events)
    prefix = f"recorded-{feed_id.hex[:8]}-"
    mappings = {
        m.market_id: str(by_slug[prefix + re.sub(r"[^a-z0-9]+", "-", m.market_id.lower())])
        for m in recording.markets
    }
    conn.execute(
        """INSERT INTO prediction_data_feeds
             (id, source_id, user_id, name, config, event_mapping_mode, manual_event_mappings)
           SELECT %s, s.id, %s, %s, %s, 'manual', %s FROM prediction_data_sources s
           WHERE s.source_id = 'upload'""",
        (feed_id, owner, recording.name, Jsonb({}), Jsonb(mappings)),
    )
    return feed_id


def upload_recording(
    conn: psycopg.Connection,
    landing: LandingZone,
    feed_id: uuid.UUID,
    files: list[tuple[str, bytes]],
    *,
    now: Callable[[], datetime],
) -> list[PushReport]:
    """Land the files as `feeds upload` would, in the order given."""
    feed = load_feed(conn, feed_id)
    assert feed is not None
    return [land_upload(conn, landing, feed, data, name, now=now) for name, data in files]


def load_recordings(
    conn: psycopg.Connection,
    landing: LandingZone,
    *,
    owner: uuid.UUID,
    now: datetime,
) -> tuple[list[uuid.UUID], bool]:
    """The recordings' feeds for `owner`, their files landed once (at `now`, as uploads at
    that hour); returns the feed ids and whether anything was landed now. `conn` must be in
    autocommit mode, as `feeds upload`'s."""
    feed_ids, landed = [], False
    for recording in recordings():
        with conn.transaction():
            feed_id = create_recording_feed(conn, recording, owner=owner)
        feed_ids.append(feed_id)
        if conn.execute(
            "SELECT 1 FROM prediction_feed_runs WHERE feed_id = %s LIMIT 1", (feed_id,)
        ).fetchone():
            continue
        files = [("history.csv", recording.history_csv()), ("listing.csv", recording.listing_csv())]
        upload_recording(conn, landing, feed_id, files, now=lambda: now)
        landed = True
    return feed_ids, landed


# Per recording: markets, resolved YES/NO by the pipeline, scored, and the Brier score of the
# scored ones (on the exact final probabilities calibration reads).
RECORDING_SUMMARY_SQL = """
SELECT f.name, count(*) AS markets,
       count(r.id) FILTER (WHERE r.outcome IN ('YES', 'NO')) AS resolved,
       count(r.id) FILTER (WHERE r.outcome IN ('YES', 'NO')
                             AND r.final_probability_exact IS NOT NULL) AS scored,
       avg((r.final_probability_exact - (r.outcome = 'YES')::int) ^ 2)
         FILTER (WHERE r.outcome IN ('YES', 'NO')) AS brier
FROM prediction_data_feeds f
CROSS JOIN LATERAL jsonb_each_text(f.manual_event_mappings) AS m(market, event_id)
LEFT JOIN prediction_resolutions r ON r.event_id = m.event_id::uuid
WHERE f.id = ANY(%s)
GROUP BY f.name ORDER BY f.name
"""


def recording_summary(conn: psycopg.Connection, feed_ids: list[uuid.UUID]) -> list[tuple]:
    return conn.execute(RECORDING_SUMMARY_SQL, (feed_ids,)).fetchall()
