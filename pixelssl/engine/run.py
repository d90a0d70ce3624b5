"""Starting or resuming a run directory: shared by pre-training and inpainting training.

A new run gets a fresh directory (an existing run is never overwritten); a resumed run takes its saved
config, and only keys that do not change the computation may be overridden (else the difference is shown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from pixelssl.config import load_config, schema_keys, to_yaml
from pixelssl.engine.checkpoint import load_checkpoint, load_newest_valid
from pixelssl.errors import PixelSSLError

log = logging.getLogger(__name__)
T = TypeVar("T")


def timestamped(prefix: str) -> str:
    return f"{prefix}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def find_checkpoint(path: str | Path) -> Path:
    """A run directory (its checkpoints/last.pt) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise PixelSSLError(f"no checkpoint to resume at '{path}'")
    return path


def resume_config(schema: type[T], state: dict, overrides: list[str] | None, safe_keys: set[str]) -> T:
    """The saved config with only computation-neutral overrides applied; other changes are refused."""
    saved = load_config(schema, base=state["config"])
    cfg = load_config(schema, base=state["config"], overrides=overrides)
    changed = [(k, OmegaConf.select(saved, k), OmegaConf.select(cfg, k)) for k in schema_keys(schema)]
    changed = [(k, a, b) for k, a, b in changed if k not in safe_keys and a != b]
    if changed:
        shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed)
        raise PixelSSLError(f"cannot change these keys when resuming (it would not continue the same run): {shown}")
    return cfg


def load_run_config(schema: type[T], cfg: T | None, resume: str | Path | None, overrides: list[str] | None,
                    safe_keys: set[str]) -> tuple[T, dict | None, Path | None]:
    """(config, checkpoint state or None, checkpoint path or None) for a new or resumed run; writes nothing, so
    every process of a distributed run can call it."""
    if resume is None:
        if cfg is None:
            raise ValueError("a config or a run to resume is needed")
        return cfg, None, None
    if Path(resume).is_dir() and (Path(resume) / "checkpoints").is_dir():
        state, ckpt_path = load_newest_valid(Path(resume) / "checkpoints")  # skips a corrupt newest file, logged
    else:
        ckpt_path = find_checkpoint(resume)
        state = load_checkpoint(ckpt_path)
    return resume_config(schema, state, overrides, safe_keys), state, ckpt_path


def make_run_dir(cfg: Any, ckpt_path: Path | None, default_name: Callable[[Any], str]) -> Path:
    """The run directory (the checkpoint's run when resuming, else a new one that must not hold a run yet), with
    the resolved ``config.yaml`` written into it."""
    if ckpt_path is not None:
        run_dir = ckpt_path.parent.parent
    else:
        run_dir = Path(cfg.run.output_dir) / (cfg.run.name or default_name(cfg))
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise PixelSSLError(f"run directory '{run_dir}' already holds a run; resume it with --resume {run_dir} "
                                f"or choose another run.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    return run_dir


def start_run(schema: type[T], cfg: T | None, resume: str | Path | None, overrides: list[str] | None,
              safe_keys: set[str], default_name: Callable[[T], str]) -> tuple[T, dict | None, Path]:
    """(config, checkpoint state or None, run directory) for a new or resumed run; writes config.yaml."""
    cfg, state, ckpt_path = load_run_config(schema, cfg, resume, overrides, safe_keys)
    run_dir = make_run_dir(cfg, ckpt_path, default_name)
    if state is not None:
        log.info("resuming %s from step %d", run_dir, state["step"])
    return cfg, state, run_dir
