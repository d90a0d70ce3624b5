"""``import_checkpoint(path, fmt)``: a released checkpoint as our backbone (torchvision ResNet names, no ``fc``) and
the heads whose layers are ours one to one, read without running pickled code (``pixelssl.models.safe_load``).

Key layouts, from each release's code (``module.`` is the DistributedDataParallel wrapper, tolerated everywhere):

- ``pixpro`` (zdaxie/PixPro ``main_pretrain.py`` ``save_checkpoint``, ``contrast/models/PixPro.py``):
  ``{'opt': argparse.Namespace, 'model': {...}, 'optimizer', 'scheduler', 'epoch'[, 'amp']}`` (``publish_model.py``
  keeps only ``'model'``), with ``module.encoder.*`` / ``module.encoder_k.*`` (``contrast/resnet.py`` with
  ``head_type='early_return'``: torchvision's names, no ``fc``), ``module.projector[_k].{linear1,bn1,linear2}.*``
  (``MLP2d``), ``module.value_transform.*`` and, for PixPro+, ``module.projector_instance[_k].*``,
  ``module.predictor.*``.
- ``densecl`` (WXinlong/DenseCL ``openselfsup/models/densecl.py``; mmcv's ``save_checkpoint``):
  ``{'meta', 'state_dict': {...}, 'optimizer'}`` with ``encoder_q.0.*`` (the ResNet, torchvision's names; also
  registered as ``backbone.*``), ``encoder_q.1.mlp.{0,2}`` / ``encoder_q.1.mlp2.{0,2}`` (``DenseCLNeck``),
  ``encoder_k.*``, ``queue``, ``queue_ptr``, ``queue2``, ``queue2_ptr``; or ``tools/extract_backbone_weights.py``'s
  ``{'state_dict': {conv1.weight, ...}, 'author'}``, or a plain backbone state dict.
- ``pixcon`` (pangzss/PixCon, MMSelfSup 0.x ``mmselfsup/models/algorithms/pixcon.py``): as DenseCL, with the neck's
  SyncBN (``mlp.{0,1,3}``) and ``predictor.mlp.*`` / ``predictor_dense.mlp.*`` (``MoCoV2Neck``; the dense one is a
  Linear on every pixel); MMSelfSup's ``backbone.*`` layout (and ``extract_backbone_weights.py``'s plain one) too.
  ``publish_model.py`` writes the legacy torch format; both formats are read.
- ``moco`` (facebookresearch/moco ``main_moco.py``, ``moco/builder.py``): ``{'epoch', 'arch', 'state_dict':
  {module.encoder_q.* (a torchvision ResNet whose ``fc`` is MoCo v2's ``Linear-ReLU-Linear`` or v1's Linear),
  module.encoder_k.*, module.queue, module.queue_ptr}, 'optimizer'}``.
- ``detectron2``: ``{'model': {stem.conv1.weight, res2.0.conv1.norm.weight, res2.0.shortcut.weight, ...: ndarray},
  '__author__', 'matching_heuristics'}`` pickles (the releases' ``convert-pretrain-to-detectron2.py``, ``pixelssl
  export --to detectron2``) or a detectron2 ``.pth`` (a detector's ``backbone.bottom_up.*`` is taken). The names are
  ``export.keymaps``'s, inverted; detectron2 files made with ``STRIDE_IN_1X1`` (MSRA/Caffe2 weights) are not
  torchvision's architecture although the shapes agree.
- ``torchvision``: a ``torchvision.models.resnetXX`` state dict (``fc.*`` is ignored).

Heads go to ``<module>.safetensors`` in our names (``pixelssl.models.heads``) only when each release layer is ours
one to one: PixPro's ``MLP2d`` -> ``ConvMLP`` (``projector``, ``projector_instance``, ``predictor``) and its
``value_transform``; DenseCL / PixCon neck ``mlp`` -> ``MLP`` (``projector``), ``mlp2`` -> ``ConvMLP``
(``dense_projector``), PixCon ``predictor`` -> ``MLP``, ``predictor_dense`` -> ``ConvMLP`` (``dense_predictor``,
its Linear weights as 1x1 convs); MoCo v2's ``fc`` -> ``MLP`` (``head``). Anything else is reported as ignored.
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
from pixelssl.export.keymaps import torchvision_name
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
_NAMES = {"pixpro": "PixPro", "densecl": "DenseCL", "pixcon": "PixCon", "moco": "MoCo", "detectron2": "detectron2",
          "torchvision": "torchvision"}


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
def _quoted(key: str) -> str:
    """A file's key for a message: ``'key'``, or its ``repr`` when it holds a line break or control character."""
    return f"'{key}'" if key.isprintable() else repr(key)


def _tensor(path: Path, key: str, value: Any) -> Tensor | None:
    """A state entry as a tensor (numpy arrays of detectron2 files copied into one); None for other values."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise WeightsFileError(f"'{path}': {_quoted(key)} is an array of Python objects, not weights")
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
            guess = _guess({str(k): t for k, t in inner[0].items()}) if inner else None
            hint = f"; it looks like a {guess} file (--from {guess})" if guess and guess != fmt else ""
            shown = ", ".join(k if k.isprintable() else repr(k) for k in map(str, list(obj)[:6]))
            raise WeightsFileError(f"'{path}' is not a {_NAMES[fmt]} checkpoint: no '{container}' state dict "
                                   f"(entries: {shown}){hint}")
    tensors, other = {}, []
    for key, value in state.items():
        tensor = _tensor(path, str(key), value)
        if tensor is None:
            other.append(str(key))
        else:
            tensors[str(key)] = tensor
    return tensors, [str(e) for e in entries], other


def _wrapper(state: dict[str, Tensor]) -> str:
    """``module.`` when every key carries DistributedDataParallel's prefix, else ``""``."""
    return "module." if state and all(k.startswith("module.") for k in state) else ""


def _under(state: dict[str, Tensor], prefix: str) -> dict[str, str]:
    """{name below ``prefix``: full name} of the keys under ``prefix``."""
    return {k[len(prefix):]: k for k in state if k.startswith(prefix)}


def _guess(state: dict[str, Tensor]) -> str | None:
    """The ``--from`` format a state dict looks like (for a hint after a wrong ``--from``)."""
    keys = list(_under(state, _wrapper(state)))

    def starts(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if starts("encoder_q.0.") or starts("backbone.layer"):
        return "pixcon" if starts("predictor_dense.") else "densecl"
    if starts("encoder_q."):
        return "moco"
    if starts("encoder.") and starts("projector."):
        return "pixpro"
    if starts("stem.conv1.") or starts("backbone.bottom_up.stem."):
        return "detectron2"
    if "conv1.weight" in keys:
        return "torchvision"
    return None


def _not_this_format(path: Path, fmt: str, wanted: str, state: dict[str, Tensor]) -> WeightsFileError:
    guess = _guess(state)
    hint = f"; it looks like a {guess} file (--from {guess})" if guess and guess != fmt else ""
    example = next(iter(state), "none")
    return WeightsFileError(f"'{path}' is not a {_NAMES[fmt]} checkpoint: no {wanted} tensors "
                            f"(first key {_quoted(example)}){hint}")


# ----------------------------------------------------------------------------------------------- heads
_MLP2D = {"linear1.weight": "0.weight", "linear1.bias": "0.bias", "bn1.weight": "1.weight", "bn1.bias": "1.bias",
          "bn1.running_mean": "1.running_mean", "bn1.running_var": "1.running_var",
          "bn1.num_batches_tracked": "1.num_batches_tracked", "linear2.weight": "3.weight", "linear2.bias": "3.bias"}
_BN = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def _mlp2d(sub: dict[str, str]) -> dict[str, str] | None:
    """PixPro's ``MLP2d`` (linear1 -> bn1 -> relu1 -> linear2, 1x1 convs with biases) as our ``ConvMLP`` (0, 1, 3)."""
    required = set(_MLP2D) - {"bn1.num_batches_tracked"}
    if not required <= set(sub) <= set(_MLP2D):
        return None
    return {full: _MLP2D[rest] for rest, full in sub.items()}


def _sequential(sub: dict[str, str], state: dict[str, Tensor], conv: bool) -> dict[str, str] | None:
    """A release ``nn.Sequential`` of Linear/1x1-conv [-> BatchNorm] -> ReLU -> Linear/1x1-conv, both with biases,
    as our ``MLP`` (``conv=False``) or ``ConvMLP``: {release key: our key}; None unless it is ours layer for layer."""
    layers: dict[int, dict[str, str]] = {}
    for rest, full in sub.items():
        index, _, param = rest.partition(".")
        if not index.isdigit() or "." in param:
            return None
        layers.setdefault(int(index), {})[param] = full
    kinds = []
    for index in sorted(layers):
        params = set(layers[index])
        if "running_mean" in params and params <= _BN:
            kinds.append("bn")
        elif params == {"weight", "bias"} and state[layers[index]["weight"]].dim() in (2, 4):
            weight = state[layers[index]["weight"]]
            if weight.dim() == 4 and (tuple(weight.shape[2:]) != (1, 1) or not conv):
                return None
            kinds.append("linear")
        else:
            return None
    if kinds not in (["linear", "linear"], ["linear", "bn", "linear"]):
        return None
    ours = [0, 2] if len(kinds) == 2 else [0, 1, 3]
    return {full: f"{dst}.{param}" for dst, index in zip(ours, sorted(layers), strict=True)
            for param, full in layers[index].items()}


def _conv(sub: dict[str, str], state: dict[str, Tensor]) -> dict[str, str] | None:
    """A single 1x1 ``nn.Conv2d`` with bias (PixPro's ``value_transform`` with one layer) under the same names."""
    if set(sub) == {"weight", "bias"} and state[sub["weight"]].dim() == 4:
        return {full: rest for rest, full in sub.items()}
    return None


# ----------------------------------------------------------------------------------------------- layouts
@dataclass
class _Plan:
    """Where a release keeps what we take: backbone {release key: our key}, heads {module: {release key: our key}}."""

    encoder: str
    backbone: dict[str, str]
    heads: dict[str, dict[str, str]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # head -> "MLP" / "ConvMLP" / "Conv2d"
    notes: list[str] = field(default_factory=list)


def _add_head(plan: _Plan, name: str, mapping: dict[str, str] | None, prefix: str, found: bool, kind: str) -> None:
    """Take a head whose mapping is exact; note one that exists but is not ours layer for layer."""
    if mapping:
        plan.heads[name] = mapping
        plan.kinds[name] = kind
    elif found:
        plan.notes.append(f"{prefix}* is not one of our heads layer for layer: ignored")


def _one_encoder(fmt: str, encoder: str, path: Path) -> None:
    if encoder == "key":
        raise WeightsFileError(f"--encoder key: '{path}' ({_NAMES[fmt]}) holds a single encoder, no momentum copy")


def _pixpro(state: dict[str, Tensor], encoder: str, path: Path) -> _Plan:
    wrap = _wrapper(state)
    online = encoder == "online"
    enc = wrap + ("encoder." if online else "encoder_k.")
    backbone = _under(state, enc)
    if not backbone:
        raise _not_this_format(path, "pixpro", f"'{enc}*'", state)
    plan = _Plan(f"{encoder} encoder ({enc}*)", {full: rest for rest, full in backbone.items()})
    if online:
        plan.notes.append(f"the momentum encoder {wrap}encoder_k.* was not taken (--encoder key takes it)")
    suffix = "" if online else "_k"
    for name in ("projector", "projector_instance"):
        prefix = f"{wrap}{name}{suffix}."
        sub = _under(state, prefix)
        _add_head(plan, name, _mlp2d(sub), prefix, bool(sub), "ConvMLP")
    if online:
        for name in ("predictor", "value_transform"):
            prefix = f"{wrap}{name}."
            sub = _under(state, prefix)
            single = _conv(sub, state) if name == "value_transform" else None
            _add_head(plan, name, single or _mlp2d(sub), prefix, bool(sub), "Conv2d" if single else "ConvMLP")
    else:
        plan.notes.append("predictor and value_transform have no momentum copy: not taken with --encoder key")
    return plan


def _mmcv(state: dict[str, Tensor], encoder: str, path: Path, fmt: str) -> _Plan:
    """DenseCL (OpenSelfSup) and PixCon (MMSelfSup): encoder_q = Sequential(ResNet, neck), or a backbone alone."""
    wrap = _wrapper(state)
    online = encoder == "online"
    if any(k.startswith(wrap + "encoder_q.0.") for k in state):
        enc = wrap + ("encoder_q." if online else "encoder_k.")
        plan = _Plan(f"{encoder} encoder ({enc}0.*)", {full: rest for rest, full in _under(state, enc + "0.").items()})
        if online:
            plan.notes.append(f"the momentum encoder {wrap}encoder_k.* was not taken (--encoder key takes it)")
        if any(k.startswith(wrap + "backbone.") for k in state):
            plan.notes.append(f"{wrap}backbone.* is {wrap}encoder_q.0.* registered twice (same tensors): ignored")
        heads = [("projector", enc + "1.mlp.", False), ("dense_projector", enc + "1.mlp2.", True)]
        if fmt == "pixcon" and online:
            heads += [("predictor", wrap + "predictor.mlp.", False),
                      ("dense_predictor", wrap + "predictor_dense.mlp.", True)]
        for name, prefix, conv in heads:
            sub = _under(state, prefix)
            _add_head(plan, name, _sequential(sub, state, conv), prefix, bool(sub), "ConvMLP" if conv else "MLP")
        return plan
    _one_encoder(fmt, encoder, path)
    if any(k.startswith(wrap + "backbone.") for k in state):
        prefix = wrap + "backbone."
    elif any(k.startswith(wrap + "encoder_q.") for k in state):
        raise _not_this_format(path, fmt, f"'{wrap}encoder_q.0.*' (ResNet)", state)
    else:
        prefix = wrap  # tools/extract_backbone_weights.py: the backbone's own names
    backbone = _under(state, prefix)
    if not any(rest.startswith("layer") for rest in backbone):
        raise _not_this_format(path, fmt, "'encoder_q.0.*', 'backbone.*' or ResNet", state)
    where = f"{prefix}*" if prefix else "a backbone state dict, as extract_backbone_weights.py writes"
    return _Plan(f"its only encoder ({where})", {full: rest for rest, full in backbone.items()})


def _moco(state: dict[str, Tensor], encoder: str, path: Path) -> _Plan:
    wrap = _wrapper(state)
    enc = wrap + ("encoder_q." if encoder == "online" else "encoder_k.")
    sub = _under(state, enc)
    if not sub:
        raise _not_this_format(path, "moco", f"'{enc}*'", state)
    plan = _Plan(f"{'online (query)' if encoder == 'online' else 'key'} encoder ({enc}*)",
                 {full: rest for rest, full in sub.items() if not rest.startswith("fc.")})
    if encoder == "online":
        plan.notes.append(f"the momentum encoder {wrap}encoder_k.* was not taken (--encoder key takes it)")
    fc = _under(state, enc + "fc.")
    _add_head(plan, "head", _sequential(fc, state, conv=False), enc + "fc.", bool(fc), "MLP")
    return plan


def _torchvision(state: dict[str, Tensor], encoder: str, path: Path) -> _Plan:
    _one_encoder("torchvision", encoder, path)
    wrap = _wrapper(state)
    backbone = {full: rest for rest, full in _under(state, wrap).items() if not rest.startswith("fc.")}
    if not any(rest == "conv1.weight" for rest in backbone.values()):
        raise _not_this_format(path, "torchvision", "'conv1.weight' (ResNet)", state)
    return _Plan("its only encoder", backbone)


def _detectron2(state: dict[str, Tensor], encoder: str, path: Path) -> _Plan:
    _one_encoder("detectron2", encoder, path)
    wrap = _wrapper(state)
    prefix = wrap + ("backbone.bottom_up." if any(k.startswith(wrap + "backbone.bottom_up.") for k in state) else "")
    backbone = {}
    for rest, full in _under(state, prefix).items():
        name = torchvision_name(rest)
        if name is not None:
            backbone[full] = name
    if not backbone:
        raise _not_this_format(path, "detectron2", "detectron2 ResNet ('stem.conv1.weight', 'res2.0.conv1.weight', ...)",
                               state)
    where = f"{prefix}stem.*, {prefix}res2-5.*"
    return _Plan(f"its only encoder ({where})", backbone)


_LAYOUTS = {"pixpro": _pixpro, "moco": _moco, "torchvision": _torchvision, "detectron2": _detectron2,
            "densecl": lambda s, e, p: _mmcv(s, e, p, "densecl"), "pixcon": lambda s, e, p: _mmcv(s, e, p, "pixcon")}


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
        detail = f"{_quoted(wrong[0])} has shape {shapes[wrong[0]]}, {best} has {best_own[wrong[0]]}"
    elif missing:
        detail = f"missing {len(missing)} tensors, e.g. '{missing[0]}'"
    else:
        detail = f"{len(unexpected)} unexpected tensors, e.g. {_quoted(unexpected[0])}"
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
    plan = _LAYOUTS[fmt](state, encoder, path)

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
