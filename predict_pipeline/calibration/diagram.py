"""Reliability diagrams, as PNG bytes and as Markdown.

`reliability_diagram_png` (the pooled rows): top panel, observed frequency against mean
predicted probability per bin, one series per time window, with the diagonal of perfect
calibration; bottom panel, how many predictions each bin holds per window, so a point resting on
three predictions is not read as a trend.

`source_reliability_figure` / `source_reliability_png` (one curve per scored series, pooled
first): each bin's point carries its 95 % Wilson score interval of the observed frequency, and
the panel under the curves is the histogram of each series' counts per bin.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from predict_pipeline.calibration.metrics import BIN_COUNT, TIME_WINDOWS, CalibrationRow

WIDTH_PX, HEIGHT_PX = 800, 600
DPI = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
if TYPE_CHECKING:
    from matplotlib.figure import Figure

# z of a two-sided 95 % interval, the 0.975 normal quantile.
Z_95 = 1.959963984540054
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


def wilson_interval(
    successes: Any, n: Any, z: float = Z_95
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """The Wilson score interval of successes out of n (arrays or scalars; NaN where n = 0):
    centre (p̂ + z²/2n) / (1 + z²/n), half-width z·√(p̂(1 − p̂)/n + z²/4n²) / (1 + z²/n)."""
    k = np.asarray(successes, dtype=float)
    total = np.asarray(n, dtype=float)
    if np.any(total < 0) or np.any(k < 0) or np.any(k > total):
        raise ValueError("wilson_interval needs 0 ≤ successes ≤ n")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / total
        denominator = 1 + z**2 / total
        centre = (p + z**2 / (2 * total)) / denominator
        half = z * np.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / denominator
    low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def source_reliability_figure(curves: Mapping[str, list[dict[str, Any]]], *, title: str) -> Figure:
    """One curve with Wilson bands per series (curves: series → metrics.py's ten bins), and the
    histogram of counts per bin under it. Labels are '<series> (n=…)'."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("no calibration curve to draw")
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    curve_axes, count_axes = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    curve_axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    palette = [f"C{i}" for i in range(10)]
    bar_width = 1 / BIN_COUNT / (len(curves) + 1)
    largest = 1
    for slot, (series, bins) in enumerate(curves.items()):
        if len(bins) != BIN_COUNT:
            raise ValueError(f"{series}: expected {BIN_COUNT} bins, got {len(bins)}")
        colour = palette[slot % len(palette)]
        filled = [b for b in bins if b["count"]]
        counts = np.array([b["count"] for b in filled], dtype=float)
        # observed_frequency is a mean of 0/1 outcomes: × count gives back the YES count.
        yes = np.round(np.array([b["observed_frequency"] for b in filled], dtype=float) * counts)
        low, high = wilson_interval(yes, counts) if len(filled) else (np.array([]), np.array([]))
        x = [b["mean_predicted"] for b in filled]
        y = [b["observed_frequency"] for b in filled]
        total = int(sum(b["count"] for b in bins))
        curve_axes.errorbar(
            x,
            y,
            # Rounding can put p̂ a hair outside its own interval; matplotlib refuses yerr < 0.
            yerr=[np.maximum(np.subtract(y, low), 0), np.maximum(np.subtract(high, y), 0)],
            marker="o",
            capsize=3,
            color=colour,
            linewidth=2.5 if slot == 0 else 1.2,
            label=f"{series} (n={total})",
        )
        count_axes.bar(
            [b["bin_lower"] + (slot + 1) * bar_width for b in bins],
            [b["count"] for b in bins],
            width=bar_width,
            color=colour,
            label=series,
        )
        largest = max(largest, *(b["count"] for b in bins))
    curve_axes.set_title(title)
    curve_axes.set_xlim(0, 1)
    curve_axes.set_ylim(0, 1)
    curve_axes.set_ylabel("Observed frequency of YES (95 % Wilson)")
    curve_axes.legend(loc="upper left", fontsize="small")
    curve_axes.grid(alpha=0.3)
    count_axes.set_xticks([k / BIN_COUNT for k in range(BIN_COUNT + 1)])
    count_axes.set_yscale("symlog", linthresh=1)
    count_axes.set_ylim(0, largest * 2)
    count_axes.set_xlabel("Predicted probability (bins of 0.1)")
    count_axes.set_ylabel("Predictions")
    figure.tight_layout()
    return figure


def source_reliability_png(curves: Mapping[str, list[dict[str, Any]]], *, title: str) -> bytes:
    buffer = io.BytesIO()
    source_reliability_figure(curves, title=title).savefig(
        buffer, format="png", dpi=DPI, bbox_inches=None
    )
    return buffer.getvalue()
