"""What a training loop reports: one JSON object per line in ``metrics.jsonl``, the same scalars (and images) in
TensorBoard, a rich progress bar on interactive terminals (plain log lines otherwise), the throughput of the steps
between two log lines (``Window``), and the unreadable files a run skipped (``SkippedFiles``). ``RunLogger`` holds
them together for one run; only the main process writes.

TensorBoard figures come from a ``FigureDrawer`` handed in by the caller (the pre-training command hands the
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

from pixelssl import dist

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

    def write_image(self, tag: str, image: Any, step: int) -> None:
        """A (3, H, W) image in [0, 1] into TensorBoard (nothing without it)."""
        if self._tb is not None:
            self._tb.add_image(tag, image, step)

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


class Window:
    """The steps between two log lines: images per second, the share of that time spent waiting for data, and
    the mean of the losses of the steps that were applied. Time spent on diagnostics (figures, monitors) is
    ``exclude``-d, so it does not count against training throughput."""

    def __init__(self, images_per_step: int) -> None:
        self.images_per_step = images_per_step
        self.reset()
        self._wait_start = self.start

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.steps, self.wait, self.loss_sum, self.applied = 0, 0.0, 0.0, 0

    def data_ready(self) -> None:
        """A batch arrived: the time since the last step ended was spent waiting for it."""
        self.wait += time.perf_counter() - self._wait_start

    def step_done(self, loss: float | None = None) -> None:
        """One step finished; ``loss`` when it was applied (a skipped step's is left out of the mean)."""
        self.steps += 1
        if loss is not None:
            self.loss_sum, self.applied = self.loss_sum + loss, self.applied + 1

    def waiting(self) -> None:
        """The step's work (logging and checkpoints included) is over; waiting for the next batch starts."""
        self._wait_start = time.perf_counter()

    def exclude(self, seconds: float) -> None:
        self.start += seconds

    def mean_loss(self) -> float:
        return self.loss_sum / self.applied if self.applied else float("nan")

    def rates(self) -> dict[str, float]:
        """``img_per_s`` and ``data_wait`` (the share of the window spent waiting for batches) until now."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {"img_per_s": self.steps * self.images_per_step / elapsed, "data_wait": self.wait / elapsed}


class SkippedFiles:
    """Unreadable images a run skipped: each is warned about once, and the set is checkpointed so a resumed run
    neither warns again nor forgets them."""

    def __init__(self, saved: list[str] | None = None) -> None:
        self.paths = set(saved or [])

    def note(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path not in self.paths:
                self.paths.add(path)
                log.warning("skipped unreadable image %s", path)

    def gathered(self) -> list[str]:
        """Every process's skipped files, sorted (a collective: every rank calls it)."""
        return sorted(set().union(*dist.all_gather_objects(sorted(self.paths))))

    def report_total(self, count: int) -> None:
        if count:
            log.warning("%d unreadable image(s) were skipped in total", count)


class RunLogger:
    """One run's reporting: ``MetricsWriter`` (main process only), the progress bar and the throughput ``Window``.

    A metric line is due every ``log_every`` steps, at the first step of this process's part of the run and at the
    last step; ``line`` writes it, moves the bar and starts a new window.
    """

    def __init__(self, run_dir: Path, start_step: int, total_steps: int, log_every: int, images_per_step: int, *,
                 tensorboard: bool, progress: bool, description: str, figures: FigureDrawer | None = None,
                 main: bool = True) -> None:
        self.start_step, self.total_steps, self.log_every = start_step, total_steps, log_every
        self.writer = MetricsWriter(run_dir, start_step, tensorboard, figures) if main else None
        self.tensorboard = tensorboard and main  # images written only then
        self.bar = Progress(total_steps, start_step, progress and main, description)
        self.window = Window(images_per_step)

    def due(self, done: int, last: bool = False) -> bool:
        return done % self.log_every == 0 or done == self.total_steps or done == self.start_step + 1 or last

    def write(self, step: int, values: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.write(step, values)

    def line(self, done: int, record: dict[str, Any], info: str) -> None:
        self.write(done, record)
        self.bar.update(done, info)
        self.window.reset()

    def figures(self, step: int, method: Any, cfg: Any) -> None:
        """The figure drawer's images now (their time left out of the window's throughput)."""
        if self.writer is not None:
            self.window.exclude(self.writer.write_figures(step, method, cfg))

    def image(self, tag: str, image: Any, step: int) -> None:
        """A (3, H, W) image in [0, 1] into TensorBoard (main process, ``train.tensorboard``)."""
        if self.tensorboard:
            self.writer.write_image(tag, image, step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
