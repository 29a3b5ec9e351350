"""The reliability diagram: a real PNG of a fixed size, and its Markdown embedding."""

from __future__ import annotations

import base64
import io
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from PIL import Image

from predict_pipeline.calibration.diagram import (
    PNG_SIGNATURE,
    diagram_markdown,
    reliability_diagram_png,
)
from predict_pipeline.calibration.metrics import calibration_rows

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
CATEGORY = uuid.UUID("0a000000-0000-4000-8000-00000000000a")


def rows_for(events: list[tuple[str, float, int]]):
    """Calibration rows of (outcome, probability, days before NOW) events in one category."""
    frame = pd.DataFrame(
        {
            "event_id": [uuid.UUID(int=i) for i in range(len(events))],
            "category_id": [CATEGORY] * len(events),
            "outcome": [outcome for outcome, _, _ in events],
            "final_probability": [p for _, p, _ in events],
            "resolved_at": pd.to_datetime(
                [NOW - timedelta(days=age) for _, _, age in events], utc=True
            ),
        }
    )
    return calibration_rows(frame, now=NOW, categories=[CATEGORY])


EVENTS = [
    ("YES", 0.92, 1),
    ("NO", 0.12, 3),
    ("YES", 0.65, 12),
    ("NO", 0.35, 20),
    ("YES", 0.55, 40),
    ("NO", 0.81, 75),
    ("YES", 0.3, 200),
]


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_diagram_is_an_800_by_600_png():
    png = reliability_diagram_png(rows_for(EVENTS), title="Platform calibration")

    assert png.startswith(PNG_SIGNATURE)
    image = decoded(png)
    assert (image.format, image.size) == ("PNG", (800, 600))
    # Something was drawn beyond a blank canvas: lines, bars and text in several colours.
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50


def test_diagram_draws_empty_windows_and_only_global_rows():
    # Only ALL_TIME holds a prediction; the category rows are ignored.
    rows = rows_for([("YES", 0.7, 300)])
    png = reliability_diagram_png(rows, title="One old prediction")

    assert decoded(png).size == (800, 600)


def test_diagram_of_no_predictions_at_all_still_renders():
    png = reliability_diagram_png(rows_for([]), title="Nothing resolved yet")

    assert decoded(png).size == (800, 600)


def test_diagram_without_global_rows_is_refused():
    category_rows = [r for r in rows_for(EVENTS) if r.category_id is not None]

    with pytest.raises(ValueError, match="no global calibration row"):
        reliability_diagram_png(category_rows, title="t")


def test_diagram_with_a_window_twice_is_refused():
    rows = rows_for(EVENTS)

    with pytest.raises(ValueError, match="two global calibration rows for window '7D'"):
        reliability_diagram_png(rows + rows, title="t")


def test_markdown_embeds_the_png_as_a_data_uri():
    png = reliability_diagram_png(rows_for(EVENTS), title="Platform calibration")
    markdown = diagram_markdown(png)

    prefix = "![Reliability diagram](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1], validate=True) == png


def test_markdown_refuses_bytes_that_are_not_png():
    with pytest.raises(ValueError, match="expects PNG bytes"):
        diagram_markdown(b"GIF89a")
