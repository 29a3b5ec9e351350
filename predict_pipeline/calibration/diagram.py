"""Reliability diagram of the global calibration rows, as PNG bytes and as Markdown.

Top panel: observed frequency against mean predicted probability per bin, one series per time
window, with the diagonal of perfect calibration. Bottom panel: how many predictions each bin
holds per window, so a point resting on three predictions is not read as a trend.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable

from predict_pipeline.calibration.metrics import BIN_COUNT, TIME_WINDOWS, CalibrationRow

WIDTH_PX, HEIGHT_PX = 800, 600
DPI = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WINDOW_COLOURS = {"7D": "#1f77b4", "30D": "#ff7f0e", "90D": "#2ca02c", "ALL_TIME": "#d62728"}


def reliability_diagram_png(rows: Iterable[CalibrationRow], *, title: str) -> bytes:
    """An 800×600 PNG of the global row of each window (windows without one are left out)."""
    # Imported here: matplotlib costs every process that loads the definitions ~1.5 s otherwise.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_window = _global_rows(rows)
    # A bare Figure on the Agg canvas: no pyplot global state, no display needed.
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    curve_axes, count_axes = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    curve_axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    bar_width = 1 / BIN_COUNT / (len(by_window) + 1)
    for slot, (window, row) in enumerate(by_window.items(), start=1):
        colour = WINDOW_COLOURS[window]
        bins = row.calibration_curve["bins"]
        filled = [b for b in bins if b["count"]]
        curve_axes.plot(
            [b["mean_predicted"] for b in filled],
            [b["observed_frequency"] for b in filled],
            marker="o",
            color=colour,
            label=_label(row),
        )
        count_axes.bar(
            [b["bin_lower"] + slot * bar_width for b in bins],
            [b["count"] for b in bins],
            width=bar_width,
            color=colour,
        )
    curve_axes.set_title(title)
    curve_axes.set_xlim(0, 1)
    curve_axes.set_ylim(0, 1)
    curve_axes.set_ylabel("Observed frequency of YES")
    curve_axes.legend(loc="upper left", fontsize="small")
    curve_axes.grid(alpha=0.3)
    count_axes.set_xticks([k / BIN_COUNT for k in range(BIN_COUNT + 1)])
    # Symmetric log: ALL_TIME's counts would otherwise flatten 7D's to nothing; 0 stays 0.
    count_axes.set_yscale("symlog", linthresh=1)
    largest = max(
        (b["count"] for r in by_window.values() for b in r.calibration_curve["bins"]), default=0
    )
    count_axes.set_ylim(0, max(largest, 1) * 2)
    count_axes.set_xlabel("Predicted probability (bins of 0.1)")
    count_axes.set_ylabel("Predictions")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches=None)
    return buffer.getvalue()


def diagram_markdown(png: bytes) -> str:
    """A Markdown image of the PNG as a base64 data URI (Dagster renders Markdown metadata)."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("diagram_markdown expects PNG bytes; the signature is missing")
    return f"![Reliability diagram](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _global_rows(rows: Iterable[CalibrationRow]) -> dict[str, CalibrationRow]:
    """The global rows keyed by window, in TIME_WINDOWS order."""
    found: dict[str, CalibrationRow] = {}
    for row in rows:
        if row.category_id is not None:
            continue
        if row.time_window not in TIME_WINDOWS:
            raise ValueError(f"unknown time_window {row.time_window!r} in calibration rows")
        if row.time_window in found:
            raise ValueError(f"two global calibration rows for window {row.time_window!r}")
        found[row.time_window] = row
    if not found:
        raise ValueError("no global calibration row (category_id None) to draw")
    return {window: found[window] for window in TIME_WINDOWS if window in found}


def _label(row: CalibrationRow) -> str:
    label = f"{row.time_window} (n={row.resolved_predictions}"
    if row.brier_score is not None:
        label += f", Brier {row.brier_score:.3f}"
    return label + ")"
