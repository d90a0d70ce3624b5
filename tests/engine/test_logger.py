"""engine.logger: metrics records, resume truncation, and TensorBoard figures from a drawer handed in by the caller."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pixelssl.engine.logger import MetricsWriter, read_metrics


def test_resume_drops_records_past_the_resumed_step(tmp_path):
    writer = MetricsWriter(tmp_path, 0, tensorboard=False)
    for step in (1, 2, 3):
        writer.write(step, {"loss": float(step)})
    writer.close()
    writer = MetricsWriter(tmp_path, 3, tensorboard=False)
    writer.write(3, {"loss": 0.5})
    writer.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [(1, 1.0), (2, 2.0), (3, 0.5)]


def test_figures_come_from_the_drawer_and_a_failing_one_is_switched_off(tmp_path, caplog):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    calls = []

    def drawer(method, cfg):
        calls.append((method, cfg))
        if len(calls) == 2:
            raise RuntimeError("no features\nsecond line")
        yield "figures/test/0", np.full((4, 6, 3), 200, dtype=np.uint8)

    writer = MetricsWriter(tmp_path, 0, tensorboard=True, figures=drawer)
    assert writer.write_figures(1, "method", "cfg") >= 0 and calls == [("method", "cfg")]
    with caplog.at_level(logging.WARNING, logger="pixelssl.engine.logger"):
        writer.write_figures(2, "method", "cfg")
    assert "figures failed at step 2 (no features); no more figures this run" in caplog.text
    assert writer.write_figures(3, "method", "cfg") == 0.0 and len(calls) == 2
    writer.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("figures/test/0")] == [1]


def test_no_drawer_means_no_figures(tmp_path):
    writer = MetricsWriter(tmp_path, 0, tensorboard=True)
    assert writer.write_figures(1, object(), object()) == 0.0
    writer.close()
