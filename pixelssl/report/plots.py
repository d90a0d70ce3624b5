"""Training curves from a run's ``metrics.jsonl`` (keys written by ``train.loop``): loss, learning rate, teacher
momentum and throughput; several runs overlaid on the same axes. matplotlib's object API only (no pyplot state).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# (metrics.jsonl key, axis title); "loss" is the mean over each logging window, the others the value at the step.
CURVES = (("loss", "loss (window mean)"), ("lr", "learning rate"), ("momentum", "teacher momentum"),
          ("img_per_s", "throughput (images/s)"))


def series(records: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one key over the records that have it; non-finite values (written as text) become NaN."""
    steps, values = [], []
    for record in records:
        if key not in record or "step" not in record:
            continue
        try:
            value = float(record[key])
        except (TypeError, ValueError):
            continue
        steps.append(int(record["step"]))
        values.append(value if math.isfinite(value) else math.nan)
    return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)


def loss_terms(records: Sequence[Mapping]) -> list[str]:
    """The named loss parts a method logged beside the total (``loss_dense``, ``loss_instance``, ...), sorted."""
    return sorted({k for r in records for k in r if k.startswith("loss_")})


def _panel(ax, runs: Mapping[str, Sequence[Mapping]], key: str, title: str) -> None:
    drawn = False
    for label, records in runs.items():
        steps, values = series(records, key)
        if len(steps):
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, linewidth=1.4, label=label)
            drawn = True
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.set_xlabel("step", fontsize=8)
        if len(runs) > 1:
            ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, fontsize=9, color="grey")


def curves_figure(runs: Mapping[str, Sequence[Mapping]], curves: Sequence[tuple[str, str]] = CURVES) -> Figure:
    """One panel per curve (2 per row), each run one line: ``runs`` maps a label to its metrics records."""
    rows = math.ceil(len(curves) / 2)
    # Fixed margins: matplotlib's constrained layout would cost about a second per figure on a slow CPU.
    fig = Figure(figsize=(8.0, 2.6 * rows), dpi=90)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.5 / (2.6 * rows), top=1 - 0.3 / (2.6 * rows),
                        wspace=0.25, hspace=0.45)
    axes = fig.subplots(rows, 2, squeeze=False).ravel()
    for ax, (key, title) in zip(axes, curves):
        _panel(ax, runs, key, title)
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    return fig


def loss_terms_figure(runs: Mapping[str, Sequence[Mapping]]) -> Figure | None:
    """The named loss parts (one panel each, runs overlaid); None when no run logged any."""
    keys = sorted({k for records in runs.values() for k in loss_terms(records)})
    if not keys:
        return None
    return curves_figure(runs, [(k, k.replace("_", " ")) for k in keys])


# Live-monitor keys (train.monitor_every, pixelssl.train.monitor) in the order they are drawn, with panel titles;
# MoCo, which has no dense projector, logs the indicators of its C5 features as monitor/c5_<name>.
MONITOR_CURVES = (
    ("probe_miou", "monitor: linear-probe mIoU (C5)"), ("cos_across_images", "monitor: cos across images"),
    ("cos_within_image", "monitor: cos within an image"), ("feature_std", "monitor: std of normalised features"),
    ("effective_rank", "monitor: C5 effective rank"),
)


def monitor_keys(records: Sequence[Mapping]) -> list[str]:
    """The live-monitor keys a run logged (``monitor/...``), in ``MONITOR_CURVES`` order, unknown ones last."""
    logged = {k for r in records for k in r if k.startswith("monitor/") and k != "monitor/seconds"}
    order = {name: i for i, (name, _) in enumerate(MONITOR_CURVES)}
    names = {k: k.removeprefix("monitor/") for k in logged}
    return sorted(logged, key=lambda k: (order.get(names[k].removeprefix("c5_"), len(order)),
                                         names[k].startswith("c5_"), k))


def monitor_figure(runs: Mapping[str, Sequence[Mapping]]) -> Figure | None:
    """The live monitors' curves (probe mIoU, collapse indicators; runs overlaid); None when no run logged any."""
    keys = monitor_keys([record for records in runs.values() for record in records])
    if not keys:
        return None
    titles = dict(MONITOR_CURVES)
    panels = []
    for key in keys:
        name = key.removeprefix("monitor/")
        base = name.removeprefix("c5_")
        title = titles.get(base, f"monitor: {base.replace('_', ' ')}")
        panels.append((key, f"{title} (C5)" if name.startswith("c5_") and "(C5)" not in title else title))
    return curves_figure(runs, panels)


def figure_png(fig: Figure) -> bytes:
    """A figure rendered to PNG bytes with the Agg backend."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def figure_rgb(fig: Figure) -> np.ndarray:
    """A figure rendered to an (H, W, 3) uint8 array with the Agg backend."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
