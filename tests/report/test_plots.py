"""Training curves from a hand-written metrics.jsonl."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from pixelssl.engine.logger import read_metrics
from pixelssl.report import plots

RECORDS = [
    {"step": 1, "loss": 2.0, "loss_dense": 1.5, "lr": 0.1, "momentum": 0.99, "img_per_s": 10.0},
    {"step": 5, "loss": 1.5, "loss_dense": 1.0, "lr": 0.2, "momentum": 0.995, "img_per_s": 12.5},
    {"step": 10, "loss": "nan", "loss_dense": 0.5, "lr": 0.3, "momentum": 1.0, "img_per_s": 11.0},
]


def write_metrics(path, records, torn: bool = False):
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text + ('{"step": 11, "lo' if torn else ""))
    return path


def test_series_reads_steps_and_values_and_turns_text_nan_into_nan(tmp_path):
    records = read_metrics(write_metrics(tmp_path / "metrics.jsonl", RECORDS, torn=True))  # torn last line ignored
    steps, values = plots.series(records, "loss")
    assert steps.tolist() == [1, 5, 10]
    assert values[:2].tolist() == [2.0, 1.5] and np.isnan(values[2])
    steps, values = plots.series(records, "lr")
    assert steps.tolist() == [1, 5, 10] and values.tolist() == [0.1, 0.2, 0.3]
    assert plots.series(records, "absent")[0].size == 0
    assert plots.loss_terms(records) == ["loss_dense"]


def test_curves_figure_plots_each_curve_of_each_run():
    other = [{"step": s, "loss": 3.0 - s / 10, "lr": 0.05, "momentum": 0.999} for s in (2, 4)]
    fig = plots.curves_figure({"a": RECORDS, "b": other})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [title for _, title in plots.CURVES]
    loss_ax, lr_ax, momentum_ax, speed_ax = axes
    a_loss, b_loss = loss_ax.get_lines()
    assert a_loss.get_xdata().tolist() == [1, 5, 10] and a_loss.get_ydata()[:2].tolist() == [2.0, 1.5]
    assert b_loss.get_xdata().tolist() == [2, 4] and np.allclose(b_loss.get_ydata(), [2.8, 2.6])
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["a", "b"]
    assert momentum_ax.get_lines()[0].get_ydata().tolist() == [0.99, 0.995, 1.0]
    assert len(speed_ax.get_lines()) == 1  # run b logged no throughput


def test_a_curve_nobody_logged_says_so():
    fig = plots.curves_figure({"a": [{"step": 1, "loss": 1.0}]}, [("loss", "loss"), ("lr", "learning rate")])
    lr_ax = fig.axes[1]
    assert not lr_ax.get_lines() and [t.get_text() for t in lr_ax.texts] == ["not logged"]
    assert fig.axes[0].get_legend() is None  # one run: no legend


def test_loss_terms_figure_and_rendering():
    assert plots.loss_terms_figure({"a": [{"step": 1, "loss": 1.0}]}) is None
    fig = plots.loss_terms_figure({"a": RECORDS})
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["loss dense"]
    png = plots.figure_png(fig)
    assert Image.open(io.BytesIO(png)).format == "PNG"
    rgb = plots.figure_rgb(fig)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3 and rgb.shape[:2] == Image.open(io.BytesIO(png)).size[::-1]


def test_monitor_figure_draws_the_probe_and_collapse_indicators():
    assert plots.monitor_figure({"a": RECORDS}) is None
    monitors = [{"step": s, "monitor/probe_miou": 0.1 * s, "monitor/cos_across_images": 0.5,
                 "monitor/effective_rank": 9.0, "monitor/seconds": 0.4} for s in (2, 4)]
    moco = [{"step": 4, "monitor/c5_cos_across_images": 0.7}]
    fig = plots.monitor_figure({"a": RECORDS + monitors, "moco": moco})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["monitor: linear-probe mIoU (C5)", "monitor: cos across images",
                                               "monitor: cos across images (C5)", "monitor: C5 effective rank"]
    assert axes[0].get_lines()[0].get_xdata().tolist() == [2, 4]
    assert np.allclose(axes[0].get_lines()[0].get_ydata(), [0.2, 0.4])
