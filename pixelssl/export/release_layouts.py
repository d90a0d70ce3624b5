"""How each release lays out its checkpoint's keys, and which of its head layers are ours one to one: the per-format
key plans ``importers.import_checkpoint`` follows to take a backbone and heads out of a release's state dict.

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

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from pixelssl.errors import WeightsFileError
from pixelssl.export.keymaps import torchvision_name

# The releases' names, for messages.
RELEASE_NAMES = {"pixpro": "PixPro", "densecl": "DenseCL", "pixcon": "PixCon", "moco": "MoCo", "detectron2": "detectron2",
                 "torchvision": "torchvision"}


def quoted_key(key: str) -> str:
    """A file's key for a message: ``'key'``, or its ``repr`` when it holds a line break or control character."""
    return f"'{key}'" if key.isprintable() else repr(key)


def _wrapper(state: dict[str, Tensor]) -> str:
    """``module.`` when every key carries DistributedDataParallel's prefix, else ``""``."""
    return "module." if state and all(k.startswith("module.") for k in state) else ""


def _under(state: dict[str, Tensor], prefix: str) -> dict[str, str]:
    """{name below ``prefix``: full name} of the keys under ``prefix``."""
    return {k[len(prefix):]: k for k in state if k.startswith(prefix)}


def guess_format(state: dict[str, Tensor]) -> str | None:
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
    guess = guess_format(state)
    hint = f"; it looks like a {guess} file (--from {guess})" if guess and guess != fmt else ""
    example = next(iter(state), "none")
    return WeightsFileError(f"'{path}' is not a {RELEASE_NAMES[fmt]} checkpoint: no {wanted} tensors "
                            f"(first key {quoted_key(example)}){hint}")


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
class ImportPlan:
    """Where a release keeps what we take: backbone {release key: our key}, heads {module: {release key: our key}}."""

    encoder: str
    backbone: dict[str, str]
    heads: dict[str, dict[str, str]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # head -> "MLP" / "ConvMLP" / "Conv2d"
    notes: list[str] = field(default_factory=list)


def _add_head(plan: ImportPlan, name: str, mapping: dict[str, str] | None, prefix: str, found: bool, kind: str) -> None:
    """Take a head whose mapping is exact; note one that exists but is not ours layer for layer."""
    if mapping:
        plan.heads[name] = mapping
        plan.kinds[name] = kind
    elif found:
        plan.notes.append(f"{prefix}* is not one of our heads layer for layer: ignored")


def _one_encoder(fmt: str, encoder: str, path: Path) -> None:
    if encoder == "key":
        raise WeightsFileError(f"--encoder key: '{path}' ({RELEASE_NAMES[fmt]}) holds a single encoder, no momentum copy")


def _pixpro(state: dict[str, Tensor], encoder: str, path: Path) -> ImportPlan:
    wrap = _wrapper(state)
    online = encoder == "online"
    enc = wrap + ("encoder." if online else "encoder_k.")
    backbone = _under(state, enc)
    if not backbone:
        raise _not_this_format(path, "pixpro", f"'{enc}*'", state)
    plan = ImportPlan(f"{encoder} encoder ({enc}*)", {full: rest for rest, full in backbone.items()})
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


def _mmcv(state: dict[str, Tensor], encoder: str, path: Path, fmt: str) -> ImportPlan:
    """DenseCL (OpenSelfSup) and PixCon (MMSelfSup): encoder_q = Sequential(ResNet, neck), or a backbone alone."""
    wrap = _wrapper(state)
    online = encoder == "online"
    if any(k.startswith(wrap + "encoder_q.0.") for k in state):
        enc = wrap + ("encoder_q." if online else "encoder_k.")
        plan = ImportPlan(f"{encoder} encoder ({enc}0.*)", {full: rest for rest, full in _under(state, enc + "0.").items()})
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
    return ImportPlan(f"its only encoder ({where})", {full: rest for rest, full in backbone.items()})


def _moco(state: dict[str, Tensor], encoder: str, path: Path) -> ImportPlan:
    wrap = _wrapper(state)
    enc = wrap + ("encoder_q." if encoder == "online" else "encoder_k.")
    sub = _under(state, enc)
    if not sub:
        raise _not_this_format(path, "moco", f"'{enc}*'", state)
    plan = ImportPlan(f"{'online (query)' if encoder == 'online' else 'key'} encoder ({enc}*)",
                 {full: rest for rest, full in sub.items() if not rest.startswith("fc.")})
    if encoder == "online":
        plan.notes.append(f"the momentum encoder {wrap}encoder_k.* was not taken (--encoder key takes it)")
    fc = _under(state, enc + "fc.")
    _add_head(plan, "head", _sequential(fc, state, conv=False), enc + "fc.", bool(fc), "MLP")
    return plan


def _torchvision(state: dict[str, Tensor], encoder: str, path: Path) -> ImportPlan:
    _one_encoder("torchvision", encoder, path)
    wrap = _wrapper(state)
    backbone = {full: rest for rest, full in _under(state, wrap).items() if not rest.startswith("fc.")}
    if not any(rest == "conv1.weight" for rest in backbone.values()):
        raise _not_this_format(path, "torchvision", "'conv1.weight' (ResNet)", state)
    return ImportPlan("its only encoder", backbone)


def _detectron2(state: dict[str, Tensor], encoder: str, path: Path) -> ImportPlan:
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
    return ImportPlan(f"its only encoder ({where})", backbone)


# --from format -> the plan of its state dict (state, encoder, path) -> ImportPlan.
LAYOUTS = {"pixpro": _pixpro, "moco": _moco, "torchvision": _torchvision, "detectron2": _detectron2,
           "densecl": lambda s, e, p: _mmcv(s, e, p, "densecl"), "pixcon": lambda s, e, p: _mmcv(s, e, p, "pixcon")}
