"""Checkpoints that survive crashes: atomic writes (temp file, fsync, rename), safe loads, rotation.

``checkpoints/step_N.pt`` is written first; ``last.pt`` is then pointed at it by an atomic hard link,
so the newest complete checkpoint is always ``last.pt`` and nothing is written twice.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from pixelssl.errors import PixelSSLError

_STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _atomic_link(target: Path, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(target, tmp)
    except OSError:  # filesystems without hard links: fall back to a copy
        import shutil

        shutil.copyfile(target, tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


def step_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Numbered checkpoints in a folder, oldest first."""
    found = []
    for path in Path(folder).glob("step_*.pt"):
        match = _STEP_FILE.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(folder: Path, state: dict, step: int, keep: int) -> Path:
    """Write ``step_N.pt``, point ``last.pt`` at it, and keep only the newest ``keep`` numbered files."""
    folder = Path(folder)
    path = folder / f"step_{step:08d}.pt"
    atomic_save(state, path)
    _atomic_link(path, folder / "last.pt")
    for _, old in step_checkpoints(folder)[:-keep] if keep > 0 else step_checkpoints(folder):
        old.unlink()
    return folder / "last.pt"


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only; no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise PixelSSLError(f"checkpoint '{path}' does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PixelSSLError(f"cannot load checkpoint '{path}': {str(exc).splitlines()[0]}") from exc
