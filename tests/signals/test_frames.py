"""Frames of stage 2: concatenating blocks whose columns are empty in some of them."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import pandas as pd

from predict_pipeline.signals.frames import concat_rows


def test_concat_rows_types_as_pandas_did_and_without_its_future_warning():
    """Validation's rejected rows (typed) and the readers' rejects (columns they never read are
    all-NaN floats): the moments stay datetimes, the texts objects, the missing stay missing."""
    validated = pd.DataFrame(
        {
            "source": pd.Series(["kalshi"], dtype=object),
            "fetched_at": pd.to_datetime([datetime(2026, 11, 22, 15, tzinfo=UTC)], utc=True),
            "narrative": pd.Series([None], dtype=object),
            "record_index": [3],
        }
    )
    unread = pd.DataFrame(
        [{"record_index": 7}], columns=["source", "fetched_at", "narrative", "record_index"]
    )
    nothing = validated.iloc[:0].astype({"fetched_at": object})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        frame = concat_rows([validated, nothing, unread])
    with warnings.catch_warnings():  # what pandas 2 gives, while it still does
        warnings.simplefilter("ignore", FutureWarning)
        before = pd.concat([validated, nothing, unread], ignore_index=True)
    assert frame.dtypes.equals(before.dtypes) and frame.equals(before)
    assert frame.dtypes.to_dict() == {
        "source": object,
        "fetched_at": pd.DatetimeTZDtype(tz=UTC),
        "narrative": object,
        "record_index": "int64",
    }
    assert frame["source"].tolist()[0] == "kalshi" and pd.isna(frame["source"].iloc[1])
    assert frame["fetched_at"].isna().tolist() == [False, True]
    assert frame["record_index"].tolist() == [3, 7]
    assert concat_rows([unread]).equals(unread.reset_index(drop=True))
