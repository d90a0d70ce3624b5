"""Read weights files without running pickled code: safetensors, torch files (``weights_only``), numpy pickles.

A torch checkpoint is a pickle, and a pickle can call any importable function while it loads. Every torch file here
goes through ``torch.load(..., weights_only=True)``, whose unpickler builds only tensors, numbers, strings, ``None``
and containers (``dict``, ``list``, ``tuple``, ``set``, ``collections.OrderedDict``), plus exactly the extra types a
caller names. The importers (``pixelssl.export.importers``) name, per release:

- PixPro (``main_pretrain.py`` saves its options under ``'opt'``): ``argparse.Namespace``.
- DenseCL / PixCon (mmcv checkpoints; MMSelfSup stores ``np.random.randint``'s seed in ``meta``): numpy scalars
  (``numpy.core.multiarray.scalar``, under numpy 1's and numpy 2's module name), ``numpy.dtype`` and the dtype
  classes of bool / int32 / int64 / float32 / float64 (``numpy.dtypes.Int64DType``, ...).
- MoCo, torchvision, detectron2 ``.pth``: nothing beyond the defaults.

detectron2's ``.pkl`` files are plain pickles of numpy arrays; ``load_numpy_pickle`` reads them with an unpickler
whose ``find_class`` resolves only ``numpy.ndarray``, ``numpy.dtype``, numpy's array and scalar reconstructors
(``numpy[._]core.multiarray._reconstruct`` / ``.scalar``, ``numpy[._]core.numeric._frombuffer``),
``_codecs.encode`` (bytes in protocol-2 pickles) and ``collections.OrderedDict``.

Any other global is refused before it is called, with one line naming the file and the global (``refused: FILE
holds pickled code (posix.system), which pixelssl does not run; ...``), never torch's advice to turn
``weights_only`` off. Missing, empty, truncated and unrecognised files are one-line ``WeightsFileError``\\ s too.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import contextlib
import pickle
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelssl.errors import WeightsFileError

# A torch.serialization safe global: the object, or (object, "module.name" it is pickled under).
SafeGlobal = Any

_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's own reconstructors, whatever their module in this numpy
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]

NUMPY_SCALARS: tuple[SafeGlobal, ...] = (
    (_SCALAR, "numpy.core.multiarray.scalar"), (_SCALAR, "numpy._core.multiarray.scalar"), np.dtype,
    *(type(np.dtype(name)) for name in ("bool", "int32", "int64", "float32", "float64")),
)
ARGPARSE_NAMESPACE: tuple[SafeGlobal, ...] = (argparse.Namespace,)

_PICKLE_GLOBALS = {
    **{f"{module}.multiarray._reconstruct": _RECONSTRUCT for module in ("numpy.core", "numpy._core")},
    **{f"{module}.multiarray.scalar": _SCALAR for module in ("numpy.core", "numpy._core")},
    **{f"{module}.numeric._frombuffer": _FROMBUFFER for module in ("numpy.core", "numpy._core")},
    "numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype, "_codecs.encode": codecs.encode,
    "collections.OrderedDict": collections.OrderedDict,
}
_TORCH_LEGACY_HEADS = tuple(pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=p)[:12] for p in (2, 3, 4, 5))
_REFUSED_PATTERNS = (re.compile(r"GLOBAL ([\w.]+)"), re.compile(r"but got <class '([\w.]+)'>"))
PLAIN = "only tensors, numbers, strings and containers are read"


class _Refused(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def refusal(path: str | Path, name: str, hint: str = "") -> WeightsFileError:
    """The one-line error for a file that holds a pickled global we do not run."""
    return WeightsFileError(f"refused: {path} holds pickled code ({name}), which pixelssl does not run; {PLAIN}"
                            + (f" ({hint})" if hint else ""))


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (torch's go on with paragraphs of advice)."""
    text = str(exc).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__


def file_kind(path: str | Path) -> str:
    """``safetensors``, ``torch`` (zip or legacy torch.save) or ``pickle``, from the suffix and first bytes."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file '{path}' does not exist")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        raise WeightsFileError(f"weights file '{path}' is empty")
    if head.startswith(b"PK\x03\x04") or head[:12] in _TORCH_LEGACY_HEADS:
        return "torch"
    if path.suffix == ".safetensors" or (len(head) > 8 and head[8:9] == b"{"):
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    raise WeightsFileError(f"'{path}' is not a weights file (neither safetensors, a torch checkpoint nor a pickle)")


@contextlib.contextmanager
def _allowing(extra: Sequence[SafeGlobal]) -> Iterator[None]:
    if not extra:
        yield
        return
    if not hasattr(torch.serialization, "safe_globals"):
        raise WeightsFileError(f"reading this checkpoint needs torch >= 2.6 (safe_globals); this is {torch.__version__}")
    with torch.serialization.safe_globals(list(extra)):
        yield


def load_torch(path: str | Path, allowed: Sequence[SafeGlobal] = (), hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU with ``allowed`` types let through; one-line errors."""
    try:
        with _allowing(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        for pattern in _REFUSED_PATTERNS:
            match = pattern.search(text)
            if match:
                raise refusal(path, match.group(1), hint) from None
        if "weights only" in text.lower() or "weights_only" in text:
            raise WeightsFileError(f"refused: {path} holds pickled objects pixelssl does not load; {PLAIN}"
                                   + (f" ({hint})" if hint else "")) from None
        raise WeightsFileError(f"cannot read '{path}': truncated or not a torch checkpoint "
                               f"({_first_line(exc)})") from exc


class _NumpyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array types (``_PICKLE_GLOBALS``) and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        found = _PICKLE_GLOBALS.get(f"{module}.{name}")
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"persistent id {str(pid)[:40]}")


def load_numpy_pickle(path: str | Path) -> Any:
    """A plain pickle of numpy arrays and containers (detectron2's ``.pkl``), read as detectron2 does (latin-1)."""
    try:
        with open(path, "rb") as handle:
            return _NumpyUnpickler(handle, encoding="latin1").load()
    except _Refused as exc:
        raise refusal(path, exc.name) from None
    except Exception as exc:
        raise WeightsFileError(f"cannot read '{path}': truncated or not a pickle ({_first_line(exc)})") from exc


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file; a truncated or foreign file is a one-line error."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise WeightsFileError(f"cannot read '{path}': truncated or not a safetensors file "
                               f"({_first_line(exc)})") from exc


def load_weights_file(path: str | Path, allowed: Sequence[SafeGlobal] = (), pickles: bool = False,
                      hint: str = "") -> Any:
    """The object stored in a safetensors, torch or (with ``pickles``) numpy-pickle file, loaded safely."""
    kind = file_kind(path)
    if kind == "safetensors":
        return load_safetensors(path)
    if kind == "torch":
        return load_torch(path, allowed, hint)
    if not pickles:
        raise WeightsFileError(f"'{path}' is a plain pickle, not a torch checkpoint"
                               + (f" ({hint})" if hint else " (a detectron2 .pkl? use --from detectron2)"))
    return load_numpy_pickle(path)
