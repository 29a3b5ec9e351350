"""The reliability diagram: a real PNG of a fixed size, and its Markdown embedding."""

from __future__ import annotations

import base64
import io
import math
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from predict_pipeline.calibration.diagram import (
    PNG_SIGNATURE,
    diagram_markdown,
    reliability_diagram_png,
    source_reliability_figure,
    source_reliability_png,
    wilson_interval,
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


# ---------------------------------------------------------------------------------------
# Wilson score intervals and the per-source diagram

Z = 1.959963984540054


def textbook_wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927) in its other closed form: (2k + z² ∓ z√(z² + 4k(n − k)/n)) / 2(n + z²)."""
    root = Z * math.sqrt(Z**2 + 4 * k * (n - k) / n)
    return ((2 * k + Z**2 - root) / (2 * (n + Z**2)), (2 * k + Z**2 + root) / (2 * (n + Z**2)))


@pytest.mark.parametrize(
    ("k", "n", "published"),
    # Published 95 % Wilson intervals (Newcombe 1998, table I; 8/10 the usual worked example).
    [(8, 10, (0.4902, 0.9433)), (81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605))],
)
def test_wilson_interval_matches_the_textbook_and_published_values(k, n, published):
    low, high = wilson_interval(k, n)

    assert (low, high) == pytest.approx(textbook_wilson(k, n), abs=1e-12)
    assert (round(low, 4), round(high, 4)) == published


def test_wilson_interval_is_vectorised_and_bounded():
    low, high = wilson_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))

    expected = [textbook_wilson(k, 10) for k in (0, 5, 10)]
    assert list(low) == pytest.approx([max(0.0, e[0]) for e in expected], abs=1e-12)
    assert list(high) == pytest.approx([min(1.0, e[1]) for e in expected], abs=1e-12)
    assert low[0] == 0.0 and high[2] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="0 ≤ successes ≤ n"):
        wilson_interval(11, 10)


def _bins(row_events: list[tuple[str, float, int]]) -> list[dict]:
    [row] = [
        r for r in rows_for(row_events) if r.category_id is None and r.time_window == "ALL_TIME"
    ]
    return row.calibration_curve["bins"]


def test_source_diagram_draws_one_curve_with_wilson_bands_per_source():
    curves = {
        "pooled": _bins(EVENTS),
        "kalshi": _bins([("YES", 0.8, 1), ("NO", 0.2, 2), ("YES", 0.85, 3)]),
        "polymarket": _bins([("NO", 0.6, 1)]),
    }
    figure = source_reliability_figure(curves, title="By source")
    curve_axes, count_axes = figure.axes

    labels = [text.get_text() for text in curve_axes.get_legend().get_texts()]
    assert labels == [
        "perfect calibration",
        "pooled (n=7)",
        "kalshi (n=3)",
        "polymarket (n=1)",
    ]
    # One error-bar container (curve + Wilson band) per source, one bar group of 10 bins each.
    assert len(curve_axes.containers) == 3
    kalshi = curve_axes.containers[1]
    line = kalshi.lines[0]
    assert list(line.get_xdata()) == pytest.approx([0.2, 0.825])
    assert list(line.get_ydata()) == pytest.approx([0.0, 1.0])
    [band] = kalshi.lines[2]
    segments = band.get_segments()
    # The 0.8–0.9 bin holds 2 YES of 2: its band is the Wilson interval of 2/2.
    assert list(segments[1][:, 1]) == pytest.approx(list(textbook_wilson(2, 2)), abs=1e-9)
    assert [len(c) for c in count_axes.containers] == [10, 10, 10]
    png = source_reliability_png(curves, title="By source")
    assert decoded(png).size == (800, 600)


def test_source_diagram_refuses_nothing_to_draw():
    with pytest.raises(ValueError, match="no calibration curve"):
        source_reliability_figure({}, title="t")
