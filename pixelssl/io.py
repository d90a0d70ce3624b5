"""Files written whole or not at all: every file pixelssl writes for later use goes through ``atomic_write``.

A write goes to a hidden temporary file in the destination's folder (``.NAME.tmp-PID``: the same filesystem, so
the rename is atomic; the pid keeps concurrent writers apart), is flushed and fsynced, then renamed over the
destination with ``os.replace``, and the folder is fsynced so the rename itself survives a power cut. A crash, a
full disk or an encoder that raises leaves the previous file (or none) under the final name, never a partial one;
the temporary file is removed and the error raised as it came, for the caller to word.

- ``atomic_write(path, data)``: text, bytes, or a function that writes into the open binary file (``torch.save``,
  ``pickle.dump``, PIL's ``Image.save``);
- ``save_weights(tensors, path, metadata)``: a safetensors file, with optional string metadata (what the model
  needs to be rebuilt: a detector's config, an inpainting generator's settings);
- ``atomic_link(target, link)``: ``link`` names the same file as ``target`` (a hard link, or a copy where the
  filesystem has none), replaced atomically (``checkpoints/last.pt``);
- ``sha256_file(path)``: the hex digest that checkpoints' sidecars and evaluation records carry.

May import: nothing of pixelssl (torch and safetensors only).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from torch import Tensor

Writer = Callable[[BinaryIO], object]


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened (Windows)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: str | os.PathLike, data: str | bytes | Writer, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text in ``encoding``, bytes, or a function given the open binary file) to ``path``
    atomically; the folder must exist. Returns ``path``."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as handle:
            if isinstance(data, str):
                handle.write(data.encode(encoding))
            elif isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def save_weights(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Tensors as a safetensors file (detached, contiguous, on the CPU), atomically, with optional metadata."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, save(state, metadata=metadata))


def atomic_link(target: str | os.PathLike, link: str | os.PathLike) -> None:
    """Make ``link`` name the file ``target`` (hard link; a copy where the filesystem has no hard links)."""
    link = Path(link)
    tmp = _temporary(link)
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:  # filesystems without hard links: fall back to a copy
        shutil.copyfile(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
