"""Checkpoints that survive crashes: atomic writes (temp file, fsync, rename), checksums, safe loads, rotation.

``checkpoints/step_N.pt`` is written first, then its SHA-256 into ``step_N.pt.sha256``; ``last.pt`` is then
pointed at it by an atomic hard link, so the newest complete checkpoint is always ``last.pt`` and nothing is
written twice. Loading verifies the checksum; ``load_newest_valid`` falls back to older checkpoints when the
newest is truncated or corrupt.
"""

from __future__ import annotations

import errno
import logging
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

from pixelssl.errors import PixelSSLError
from pixelssl.io import atomic_link, atomic_write, sha256_file

log = logging.getLogger(__name__)

_STEP_FILE = re.compile(r"step_(\d+)\.pt$")


class CheckpointError(PixelSSLError):
    """A checkpoint that cannot be used: missing, truncated, failing its checksum, or not loadable safely."""


def software_versions() -> dict[str, str]:
    """Versions stored with every checkpoint, so a resume can say what produced it."""
    from pixelssl import __version__

    return {"pixelssl": __version__, "torch": str(torch.__version__), "python": platform.python_version()}


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` (or bytes) to ``path`` through ``pixelssl.io.atomic_write`` (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, obj if isinstance(obj, bytes) else lambda handle: torch.save(obj, handle))
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CheckpointError(f"cannot write '{path}': {reason}; earlier files in {path.parent} are untouched") from exc


def step_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Numbered checkpoints in a folder, oldest first."""
    found = []
    for path in Path(folder).glob("step_*.pt"):
        match = _STEP_FILE.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _checksum_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(folder: Path, state: dict, step: int, keep: int) -> Path:
    """Write ``step_N.pt`` and its checksum, point ``last.pt`` at it, keep only the newest ``keep`` numbered files.

    A failed write (e.g. disk full) raises ``CheckpointError`` and leaves ``last.pt`` on the previous checkpoint.
    """
    folder = Path(folder)
    path = folder / f"step_{step:08d}.pt"
    atomic_save({**state, "versions": software_versions()}, path)
    atomic_save(f"{sha256_file(path)}  {path.name}\n".encode(), _checksum_file(path))
    atomic_link(path, folder / "last.pt")
    for _, old in step_checkpoints(folder)[:-keep] if keep > 0 else step_checkpoints(folder):
        old.unlink()
        _checksum_file(old).unlink(missing_ok=True)
    return folder / "last.pt"


def last_checkpoint_note(folder: Path) -> str:
    """What a run that stops now leaves behind, for its error message."""
    last = Path(folder) / "last.pt"
    return f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"


def _recorded_checksum(path: Path) -> str | None:
    """The SHA-256 recorded for ``path`` (``last.pt`` uses the sidecar of the step file it links to)."""
    candidates = [path]
    if not _STEP_FILE.search(path.name):
        candidates = [p for _, p in reversed(step_checkpoints(path.parent)) if p.exists() and os.path.samefile(p, path)]
    for candidate in candidates:
        sidecar = _checksum_file(candidate)
        if sidecar.is_file():
            fields = sidecar.read_text().split()
            return fields[0] if fields else ""  # an empty sidecar matches nothing: treated as corrupt
    return None


def load_checkpoint(path: Path, verify: bool = True) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only; no code runs), after
    checking its recorded SHA-256 (checkpoints without one, e.g. copied by hand, load with a warning)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if verify:
        expected = _recorded_checksum(path)
        if expected is None:
            log.warning("checkpoint '%s' has no recorded checksum; loading it unverified", path)
        elif sha256_file(path) != expected:
            raise CheckpointError(f"checkpoint '{path}' is corrupt: its SHA-256 differs from the one recorded "
                                  "when it was written (truncated or modified file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it contains pickled code or objects that are not plain tensors/containers (refused for safety)"
        raise CheckpointError(f"cannot load checkpoint '{path}': {reason}") from exc


def load_newest_valid(folder: Path) -> tuple[dict, Path]:
    """The newest checkpoint of a run's ``checkpoints/`` folder that loads and verifies, newest first:
    ``last.pt``, then ``step_N.pt`` by decreasing N. Each rejected file is logged with the reason."""
    folder = Path(folder)
    candidates = [folder / "last.pt"] + [p for _, p in reversed(step_checkpoints(folder))]
    problems = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            log.warning("%s; trying an older checkpoint", exc)
            continue
        if problems:
            log.warning("resuming from the older checkpoint '%s' (step %s)", path, state.get("step"))
        return state, path
    detail = f": {'; '.join(problems)}" if problems else ""
    raise CheckpointError(f"no usable checkpoint in '{folder}'{detail}")
