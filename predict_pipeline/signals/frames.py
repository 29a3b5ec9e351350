"""Normalised records as one pandas frame per block: the shape every step of stage 2 takes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat

import pandas as pd

from predict_pipeline.model import NormalisedRecord, RecordReject

# VOLUME values are stored in thousands of the source's unit: prediction_signals.value is
# DECIMAL(10,4) (at most 999,999.9999) and big markets trade millions (0.1-unit resolution
# kept; adapters keep the source's exact figure in raw_data).
VOLUME_SCALE = 1000.0

SIGNAL_COLUMNS = [
    "feed_id",
    "feed_run_id",
    "landing_file",
    "page_index",
    "record_index",
    "source",
    "source_event_id",
    "signal_type",
    "value",
    "fetched_at",
    "source_url",
    "narrative",
    "raw_data",
    "weight",
    "reliability",
    "title",
    "record",  # the NormalisedRecord itself: market facts for the review queue
]


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """One page's records and where they came from."""

    records: list[NormalisedRecord]
    feed_run_id: str | None = None
    landing_file: str | None = None
    page_index: int = 0
    rejects: list[RecordReject] = field(default_factory=list)  # items the reader could not read


def batches_frame(
    batches: list[RecordBatch], *, feed_id: str, weight: float, reliability: float | None
) -> pd.DataFrame:
    """The records of some pages as one frame with their provenance; VOLUME scaled."""
    records = [r for b in batches for r in b.records]

    def per_record(values: list) -> list:
        return list(
            chain.from_iterable(
                repeat(v, len(b.records)) for v, b in zip(values, batches, strict=True)
            )
        )

    raw = [r.raw_data for r in records]
    frame = pd.DataFrame(
        {
            "feed_id": feed_id,
            "feed_run_id": per_record([b.feed_run_id for b in batches]),
            "landing_file": per_record([b.landing_file for b in batches]),
            "page_index": per_record([b.page_index for b in batches]),
            "record_index": list(chain.from_iterable(range(len(b.records)) for b in batches)),
            "source": [r.source for r in records],
            "source_event_id": [r.source_event_id for r in records],
            "signal_type": [r.signal_type for r in records],
            "value": [r.value for r in records],
            "fetched_at": [r.fetched_at for r in records],
            "source_url": [r.source_url for r in records],
            "narrative": [r.narrative for r in records],
            "raw_data": raw,
            # A pushed record may carry its own weight; pulled records take the feed's.
            "weight": [w if isinstance(w := d.get("weight"), int | float) else weight for d in raw]
            if any("weight" in d for d in raw if isinstance(d, dict))
            else weight,
            "reliability": reliability,
            "title": [r.market.title for r in records],
            "record": records,
        },
        columns=SIGNAL_COLUMNS,
    )
    return _typed(frame)


def rejects_frame(batches: list[RecordBatch], *, feed_id: str) -> pd.DataFrame:
    """The items the readers rejected, in the shape of validation's rejected rows."""
    rows = [
        {
            "feed_id": feed_id,
            "feed_run_id": b.feed_run_id,
            "landing_file": b.landing_file,
            "page_index": b.page_index,
            "record_index": reject.item_index,
            "source_event_id": reject.source_event_id,
            "raw_data": {"item": reject.item} if reject.item is not None else {},
            "reasons": (reject.reason,),
            "detail": reject.detail,
        }
        for b in batches
        for reject in b.rejects
    ]
    return pd.DataFrame(rows, columns=[*SIGNAL_COLUMNS, "reasons", "detail"])


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames' rows as one frame (a new index), typed and filled as pandas 2 has always
    concatenated them: a column's dtype comes from the frames that have a value in it, and a
    frame with none (or no rows) gets the missing value of that dtype. pandas deprecates
    leaving those frames out when it picks the dtype, so they are given the dtype first."""
    if len(frames) < 2:
        return pd.concat(frames, ignore_index=True)
    casts: list[dict[str, pd.Series]] = [{} for _ in frames]
    shared = [c for c in frames[0].columns if all(c in frame.columns for frame in frames)]
    for column in shared:
        series = [frame[column] for frame in frames]
        missing = [len(s) == 0 or bool(s.isna().all()) for s in series]
        if len({s.dtype for s in series}) == 1 or not any(missing):
            continue
        known = [s.iloc[:0] for s, empty in zip(series, missing, strict=True) if not empty]
        dtype = pd.concat(known or [s.iloc[:0] for s in series]).dtype  # their common dtype
        if dtype.kind in "iub":
            continue  # no missing value of its own: pandas widens the column, as it always has
        for index, s in enumerate(series):
            if missing[index] and s.dtype != dtype:
                casts[index][column] = pd.Series(index=s.index, dtype=dtype)
    return pd.concat(
        [
            frame.assign(**cast) if cast else frame
            for frame, cast in zip(frames, casts, strict=True)
        ],
        ignore_index=True,
    )


def empty_frame() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in SIGNAL_COLUMNS}, columns=SIGNAL_COLUMNS))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["weight"] = frame["weight"].astype("float64")
    frame["reliability"] = pd.to_numeric(frame["reliability"], errors="coerce").astype("float64")
    volume = (frame["signal_type"] == "VOLUME").to_numpy()
    frame.loc[volume, "value"] = frame.loc[volume, "value"] / VOLUME_SCALE
    stamps = frame["fetched_at"]
    if stamps.dtype == object and all(
        isinstance(v, datetime) and v.tzinfo is not None for v in stamps
    ):
        # A moment pandas cannot hold (year 1, 9999) keeps the column as objects: validation
        # rejects that row alone.
        with contextlib.suppress(pd.errors.OutOfBoundsDatetime, OverflowError):
            frame["fetched_at"] = pd.to_datetime(stamps, utc=True)
    # Otherwise left as objects: validation rejects the rows that are not aware datetimes
    # (converting would silently read naive times as UTC).
    return frame
