"""What a report reads from a run directory: config, metrics, evaluations, and the trained model.

Every piece is optional: a missing or unreadable piece becomes a one-line note in ``RunData.notes`` (shown in
that section of the report) instead of an error, so a report of an unfinished or damaged run still renders.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixelssl.config import PretrainConfig, load_config, to_yaml
from pixelssl.engine.logger import read_metrics
from pixelssl.errors import PixelSSLError

log = logging.getLogger(__name__)


@dataclass
class RunData:
    path: Path
    label: str
    cfg: Any | None = None  # PretrainConfig
    config_yaml: str = ""
    records: list[dict] = field(default_factory=list)
    evals: list[tuple[str, dict]] = field(default_factory=list)  # (path relative to the run, eval.json content)
    model: nn.Module | None = None  # the method (or only its backbone) the figures run
    model_source: str = ""  # where the model came from, for the report
    checkpoint_step: int | None = None
    notes: dict[str, str] = field(default_factory=dict)  # section -> why it is incomplete


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_config(run: RunData) -> None:
    path = run.path / "config.yaml"
    if not path.is_file():
        run.notes["config"] = f"no config.yaml in {run.path}"
        return
    try:
        run.cfg = load_config(PretrainConfig, str(path))
        run.config_yaml = to_yaml(run.cfg)
    except PixelSSLError as exc:
        run.notes["config"] = f"cannot read {path}: {_first_line(exc)}"
        run.config_yaml = path.read_text(errors="replace")


def _load_metrics(run: RunData) -> None:
    path = run.path / "metrics.jsonl"
    run.records = read_metrics(path)
    if not run.records:
        run.notes["curves"] = "no metrics yet" if not path.is_file() else f"{path.name} holds no readable record"


def _load_evals(run: RunData) -> None:
    for path in sorted(run.path.rglob("eval.json")):
        relative = path.relative_to(run.path).as_posix()
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            run.notes.setdefault("evaluation", "")
            run.notes["evaluation"] += f"{relative} unreadable ({_first_line(exc)}); "
            continue
        run.evals.append((relative, record))


def _method_from_checkpoint(run: RunData) -> None:
    """The method rebuilt from the newest valid checkpoint (a corrupt newest one is skipped, as resume does)."""
    from pixelssl.engine.checkpoint import CheckpointError, load_newest_valid
    from pixelssl.methods.registry import build_method

    folder = run.path / "checkpoints"
    try:
        state, path = load_newest_valid(folder)
        cfg = load_config(PretrainConfig, base=state["config"])
        cfg.model.weights = ""  # the checkpoint holds the weights; a start-from file need not exist any more
        with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
            method = build_method(cfg)
        method.load_state_dict(state["model"])
    except (CheckpointError, PixelSSLError, KeyError, RuntimeError, ValueError) as exc:
        run.notes["figures"] = _first_line(exc) if isinstance(exc, CheckpointError) else \
            f"cannot rebuild the method from the checkpoint: {_first_line(exc)}"
        return
    run.model, run.cfg = method, run.cfg or cfg
    run.checkpoint_step = int(state.get("step", 0))
    run.model_source = f"{path.relative_to(run.path).as_posix()} (step {run.checkpoint_step})"


def _backbone_from_export(run: RunData) -> None:
    """Fallback without a checkpoint: the exported backbone alone (no heads, so no PPM figure)."""
    from pixelssl.evaluate.source import resolve_backbone

    if not (run.path / "backbone.safetensors").is_file():
        return
    try:
        run.model, _ = resolve_backbone(str(run.path))
    except PixelSSLError as exc:
        run.notes["figures"] += f"; backbone.safetensors unusable ({_first_line(exc)})"
        return
    run.model_source = "backbone.safetensors (no checkpoint: backbone only, no heads)"


def load_run(path: str | Path, method: nn.Module | None = None, label: str | None = None,
             with_model: bool = True) -> RunData:
    """Everything a report shows about one run; ``method`` reuses a model already in memory (the demo's), and
    ``with_model=False`` skips loading one (a report without figures)."""
    path = Path(path)
    run = RunData(path, label or path.name)
    if not path.is_dir():
        run.notes.update({s: f"run directory {path} does not exist" for s in ("config", "curves", "figures")})
        return run
    _load_config(run)
    _load_metrics(run)
    _load_evals(run)
    if method is not None:
        run.model, run.model_source = method, "the model in memory (end of training)"
    elif with_model:
        _method_from_checkpoint(run)
        if run.model is None:
            _backbone_from_export(run)
    return run


def demo_summary(folder: Path) -> dict | None:
    """The demo's ``results.json`` in ``folder`` (None when absent or not a demo summary)."""
    path = Path(folder) / "results.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and isinstance(summary.get("rows"), list) else None


def demo_runs(folder: Path, summary: dict) -> list[Path]:
    """The run directories a demo summary lists, found as recorded or under the demo folder (if it was moved)."""
    runs = []
    for row in summary["rows"]:
        if not row.get("run"):
            continue
        recorded = Path(row["run"])
        runs.append(recorded if recorded.is_dir() else Path(folder) / recorded.name)
    return runs
