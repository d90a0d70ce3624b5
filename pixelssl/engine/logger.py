"""Run metrics: one JSON object per line in ``metrics.jsonl``, the same scalars in TensorBoard, and a rich
progress bar on interactive terminals (plain log lines otherwise).

TensorBoard images come from a ``FigureDrawer`` handed in by the caller (the pre-training command hands the
report's, ``report.figures.TensorBoardFigures``): the logger knows how to write and time them, not how to draw.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# (method, run config) -> (TensorBoard tag, (H, W, 3) uint8 RGB array) for each figure; no state of the method changes.
FigureDrawer = Callable[[Any, Any], Iterable[tuple[str, Any]]]


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics.jsonl (a torn last line from a crash is ignored)."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsWriter:
    """Appends metric records; on resume, drops records past the resumed step so curves stay single-valued."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool, figures: FigureDrawer | None = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        if start_step > 0 and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) < start_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif start_step == 0 and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a", buffering=1)
        self._tb = None
        self._figures = figures
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step or None)

    def write(self, step: int, values: dict[str, Any]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def write_figures(self, step: int, method: Any, cfg: Any) -> float:
        """The figure drawer's images of the model now as TensorBoard images; returns the seconds spent, which the
        loop keeps out of its throughput. A drawer that fails is reported and switched off: a diagnostic must not
        stop training."""
        if self._tb is None or self._figures is None:
            return 0.0
        started = time.perf_counter()
        try:
            for tag, rgb in self._figures(method, cfg):
                self._tb.add_image(tag, rgb, step, dataformats="HWC")
        except Exception as exc:  # noqa: BLE001 - any failure of a diagnostic is logged, never raised
            log.warning("train.figure_every: figures failed at step %d (%s); no more figures this run", step,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            self._figures = None
        return time.perf_counter() - started

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else str(value)
    return value


class Progress:
    """A rich progress bar on a terminal; otherwise a log line about every 10% of the run."""

    def __init__(self, total: int, start: int, enabled: bool, description: str) -> None:
        self.total, self.start = total, start
        self.interactive = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self._next_log = start
        self._bar = None
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self._task = self._bar.add_task(description, total=total, completed=start, info="")
            self._bar.start()

    def update(self, step: int, info: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        elif self.enabled and (step >= self._next_log or step == self.total):
            log.info("step %d/%d  %s", step, self.total, info)
            self._next_log = step + max(self.total // 10, 1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
