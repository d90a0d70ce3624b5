"""``import_checkpoint(path, fmt)``: a released checkpoint as our backbone (torchvision ResNet names, no ``fc``) and
the heads whose layers are ours one to one, read without running pickled code (``pixelssl.models.safe_load``).

Here: reading the file safely, assembling the tensors, the ``pixelssl import`` report and writing the result (the
backbone to ``backbone.safetensors``, each head to ``<module>.safetensors`` in our names, ``pixelssl.models.heads``).
Where each release keeps its keys, and which heads map exactly, is ``export.release_layouts``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pixelssl.errors import WeightsFileError
from pixelssl.export.release_layouts import LAYOUTS, RELEASE_NAMES, guess_format, quoted_key
from pixelssl.io import save_weights
from pixelssl.models.backbones import RESNETS, build_backbone, infer_arch
from pixelssl.models.safe_load import ARGPARSE_NAMESPACE, NUMPY_SCALARS, load_weights_file

log = logging.getLogger(__name__)
_BY_DEPTH = tuple(sorted(RESNETS, key=lambda name: int(name.removeprefix("resnet"))))

IMPORT_FORMATS = ("pixpro", "densecl", "pixcon", "moco", "detectron2", "torchvision")
ENCODERS = ("online", "key")
BACKBONE_FILE = "backbone.safetensors"
# The non-tensor types each release stores (see pixelssl.models.safe_load).
_ALLOWED = {"pixpro": ARGPARSE_NAMESPACE, "densecl": NUMPY_SCALARS, "pixcon": NUMPY_SCALARS}
# Where each release keeps its state dict in the saved dict.
_CONTAINER = {"pixpro": "model", "densecl": "state_dict", "pixcon": "state_dict", "moco": "state_dict",
              "detectron2": "model", "torchvision": "state_dict"}


@dataclass
class Imported:
    """A released checkpoint in our names: the backbone, the heads that map exactly, and what was (not) taken."""

    path: Path
    fmt: str
    arch: str
    encoder: str  # which encoder was taken, in the release's names
    backbone: dict[str, Tensor]
    heads: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # our module name -> tensors
    used: dict[str, dict[str, str]] = field(default_factory=dict)  # "backbone" / head -> {release key: our key}
    ignored: list[str] = field(default_factory=list)  # release tensors not taken
    entries: list[str] = field(default_factory=list)  # the saved dict's other (non-weight) entries
    notes: list[str] = field(default_factory=list)
    head_kinds: dict[str, str] = field(default_factory=dict)  # head -> our module type, e.g. "ConvMLP"

    def report(self, written: dict[str, Path] | None = None) -> str:
        """What was read, taken and left, as the ``pixelssl import`` printout (``written``: part -> file)."""
        lines = [f"imported {self.path} (--from {self.fmt})",
                 f"  architecture: {self.arch} (inferred from the backbone tensors' names and shapes)",
                 f"  encoder: {self.encoder}"]
        for name, mapping in self.used.items():
            pairs = list(mapping.items())
            examples = ", ".join(f"{src} -> {dst}" for src, dst in pairs[:2])
            what = "the backbone" if name == "backbone" else f"the head '{name}' ({self.head_kinds.get(name, '')})"
            lines.append(f"  used {len(pairs)} tensors for {what}, e.g. {examples}")
        if self.ignored:
            lines.append(f"  ignored {len(self.ignored)} tensors: {_groups(self.ignored)}")
        else:
            lines.append("  ignored 0 tensors")
        if self.entries:
            lines.append(f"  other entries (not weights): {', '.join(self.entries)}")
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"wrote {path}" for path in (written or {}).values()]
        return "\n".join(lines)


def _groups(keys: list[str], shown: int = 8) -> str:
    """``module.encoder_k.* (320), module.queue, ...``: keys counted by their first name (after ``module.``)."""
    def group(key: str) -> str:
        parts = key.split(".")
        depth = 2 if parts[0] == "module" and len(parts) > 1 else 1
        return ".".join(parts[:depth]) + (".*" if len(parts) > depth else "")

    counts = Counter(group(k) for k in keys)
    items = [f"{g} ({n})" if n > 1 else g for g, n in counts.items()]
    more = f", and {len(items) - shown} more groups" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


# ----------------------------------------------------------------------------------------------- reading the file
def _tensor(path: Path, key: str, value: Any) -> Tensor | None:
    """A state entry as a tensor (numpy arrays of detectron2 files copied into one); None for other values."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise WeightsFileError(f"'{path}': {quoted_key(key)} is an array of Python objects, not weights")
        return torch.from_numpy(np.array(value))
    return None


def _state(obj: Any, fmt: str, path: Path) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """(the release's tensors by full name, the saved dict's other entries, non-tensor state entries)."""
    if not isinstance(obj, dict):
        raise WeightsFileError(f"'{path}' does not hold a dict of weights (it holds a {type(obj).__name__})")
    if fmt == "detectron2" and "blobs" in obj:
        raise WeightsFileError(f"'{path}' is a Caffe2 (Detectron 1) 'blobs' file, which pixelssl does not convert")
    container = _CONTAINER[fmt]
    candidates = [container] + ([k for k in ("model", "state_dict") if k != container] if fmt == "torchvision" else [])
    state, entries = obj, []
    for key in candidates:
        if isinstance(obj.get(key), dict):
            state, entries = obj[key], [k for k in obj if k != key]
            break
    else:
        if not any(isinstance(v, (Tensor, np.ndarray)) for v in obj.values()):
            inner = [v for v in obj.values() if isinstance(v, dict) and any(isinstance(t, Tensor) for t in v.values())]
            guess = guess_format({str(k): t for k, t in inner[0].items()}) if inner else None
            hint = f"; it looks like a {guess} file (--from {guess})" if guess and guess != fmt else ""
            shown = ", ".join(k if k.isprintable() else repr(k) for k in map(str, list(obj)[:6]))
            raise WeightsFileError(f"'{path}' is not a {RELEASE_NAMES[fmt]} checkpoint: no '{container}' state dict "
                                   f"(entries: {shown}){hint}")
    tensors, other = {}, []
    for key, value in state.items():
        tensor = _tensor(path, str(key), value)
        if tensor is None:
            other.append(str(key))
        else:
            tensors[str(key)] = tensor
    return tensors, [str(e) for e in entries], other


# ----------------------------------------------------------------------------------------------- assembling
def _with_step_counters(tensors: dict[str, Tensor]) -> int:
    """Add BatchNorm ``num_batches_tracked`` counters (0) the file lacks (detectron2 stores none); how many."""
    added = 0
    for key in [k for k in tensors if k.endswith("running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        if counter not in tensors:
            tensors[counter] = torch.tensor(0, dtype=torch.long)
            added += 1
    return added


def _arch_error(path: Path, backbone: dict[str, Tensor]) -> WeightsFileError:
    """Why no torchvision ResNet fits: the closest one and its first disagreement."""
    shapes = {k: tuple(v.shape) for k, v in backbone.items()}
    best, best_overlap, best_own = _BY_DEPTH[0], -1, {}
    for name in _BY_DEPTH:
        with torch.device("meta"):
            own = {k: tuple(v.shape) for k, v in build_backbone(name).state_dict().items()}
        overlap = sum(own.get(k) == s for k, s in shapes.items())
        if overlap > best_overlap:
            best, best_overlap, best_own = name, overlap, own
    missing = sorted(set(best_own) - set(shapes))
    unexpected = sorted(set(shapes) - set(best_own))
    wrong = [k for k in shapes if k in best_own and shapes[k] != best_own[k]]
    if wrong:
        detail = f"{quoted_key(wrong[0])} has shape {shapes[wrong[0]]}, {best} has {best_own[wrong[0]]}"
    elif missing:
        detail = f"missing {len(missing)} tensors, e.g. '{missing[0]}'"
    else:
        detail = f"{len(unexpected)} unexpected tensors, e.g. {quoted_key(unexpected[0])}"
    return WeightsFileError(f"unknown architecture in '{path}': its {len(shapes)} backbone tensors fit none of "
                            f"{', '.join(_BY_DEPTH)} (closest {best}: {detail})")


def import_checkpoint(path: str | Path, fmt: str, encoder: str = "online") -> Imported:
    """Read a released checkpoint of format ``fmt`` (``IMPORT_FORMATS``) and convert it into our names.

    ``encoder`` is ``online`` (the query / online encoder, used for transfer by every release) or ``key`` (the
    momentum copy). The architecture is inferred from the backbone tensors' names and shapes.
    """
    path = Path(path).expanduser()
    if fmt not in IMPORT_FORMATS:
        raise WeightsFileError(f"unknown --from '{fmt}'; choose from {', '.join(IMPORT_FORMATS)}")
    if encoder not in ENCODERS:
        raise WeightsFileError(f"unknown --encoder '{encoder}'; choose from {', '.join(ENCODERS)}")
    if path.is_dir():
        raise WeightsFileError(f"'{path}' is a folder; --from {fmt} reads a checkpoint file")
    obj = load_weights_file(path, _ALLOWED.get(fmt, ()), pickles=fmt == "detectron2")
    state, entries, non_tensors = _state(obj, fmt, path)
    plan = LAYOUTS[fmt](state, encoder, path)

    backbone = {ours: state[src].detach().clone() for src, ours in plan.backbone.items()}
    notes = list(plan.notes)
    added = _with_step_counters(backbone)
    if added:
        notes.append(f"added {added} BatchNorm num_batches_tracked counters (0): the file has none")
    arch = infer_arch(backbone)
    if arch is None:
        raise _arch_error(path, backbone)

    heads: dict[str, dict[str, Tensor]] = {}
    used = {"backbone": dict(plan.backbone)}
    for name, mapping in plan.heads.items():
        tensors = {}
        for src, ours in mapping.items():
            tensor = state[src].detach().clone()
            if plan.kinds[name] == "ConvMLP" and tensor.dim() == 2:
                tensor = tensor[:, :, None, None]  # PixCon's Linear on every pixel is a 1x1 conv
            tensors[ours] = tensor
        _with_step_counters(tensors)
        heads[name] = tensors
        used[name] = dict(mapping)
    taken = {src for mapping in used.values() for src in mapping}
    ignored = [k for k in state if k not in taken] + non_tensors
    if non_tensors:
        notes.append(f"{len(non_tensors)} state entries are not tensors, e.g. '{non_tensors[0]}'")
    log.debug("imported %s (--from %s): %s, %s", path, fmt, arch, plan.encoder)
    return Imported(path, fmt, arch, plan.encoder, backbone, heads, used, ignored, entries, notes, plan.kinds)


def _bare_stem(path: Path) -> str:
    """A file name without its weight suffixes (``moco_v2_800ep_pretrain.pth.tar`` -> ``moco_v2_800ep_pretrain``)."""
    name = path.name
    while True:
        stripped = re.sub(r"\.(tar|pth|pt|pkl|bin|ckpt|safetensors)$", "", name)
        if stripped == name or not stripped:
            return name
        name = stripped


def output_paths(imported: Imported, out: str | Path | None) -> dict[str, Path]:
    """{"backbone" or head name: file}: ``OUT/backbone.safetensors`` and ``OUT/<head>.safetensors`` for a folder
    (default ``<FILE without suffix>_pixelssl/`` beside FILE); an ``OUT`` ending in ``.safetensors`` is the backbone
    file itself, with the heads beside it (``<stem>_<head>.safetensors`` unless it is named ``backbone``)."""
    if out is None:
        out = imported.path.parent / f"{_bare_stem(imported.path)}_pixelssl"
    out = Path(out).expanduser()
    if out.suffix == ".safetensors":
        prefix = "" if out.stem == "backbone" else f"{out.stem}_"
        return {"backbone": out, **{name: out.parent / f"{prefix}{name}.safetensors" for name in imported.heads}}
    return {"backbone": out / BACKBONE_FILE, **{name: out / f"{name}.safetensors" for name in imported.heads}}


def write_imported(imported: Imported, out: str | Path | None = None) -> dict[str, Path]:
    """Write the backbone and heads as safetensors (see ``output_paths``); returns {part: file written}."""
    paths = output_paths(imported, out)
    paths["backbone"].parent.mkdir(parents=True, exist_ok=True)
    save_weights(imported.backbone, paths["backbone"])
    for name, tensors in imported.heads.items():
        save_weights(tensors, paths[name])
    return paths
