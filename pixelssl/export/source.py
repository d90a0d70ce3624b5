"""What ``pixelssl export`` reads: a run directory or a weights file, reduced to a torchvision ResNet state dict.

A run directory is read from its newest checkpoint that verifies (``engine.checkpoint.load_newest_valid``; it holds
the same weights as ``backbone.safetensors`` at the end of a run, and also those of a stopped run and the method's
extra weight files such as pixpro_fpn's FPN), else from ``backbone.safetensors`` and any other ``*.safetensors``
beside it. A weights file (``.safetensors`` or a ``weights_only`` torch file) gives the backbone only, and so does a
released checkpoint read with ``from_format``. Nothing is unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from pixelssl.engine.checkpoint import load_newest_valid, step_checkpoints
from pixelssl.errors import PixelSSLError
from pixelssl.export.importers import import_checkpoint
from pixelssl.methods.registry import method_class
from pixelssl.models.backbones import RESNETS, infer_arch, read_state_dict, strip_prefixes

log = logging.getLogger(__name__)
BACKBONE_FILE = "backbone.safetensors"


@dataclass
class ExportSource:
    """A torchvision ResNet backbone (no ``fc``), its architecture, extra weight files and where they came from."""

    backbone: dict[str, Tensor]
    arch: str
    origin: str
    default_dir: Path  # where exports go without --out
    stem: str  # file-name stem of default exports
    extra: dict[str, dict[str, Tensor]] = field(default_factory=dict)


def _resnet_state(state: dict[str, Tensor], where: str) -> tuple[dict[str, Tensor], str]:
    """The backbone part of a state dict (``backbone.*`` of a method, else the whole, wrapper prefixes removed)."""
    if any(k.startswith("backbone.") for k in state) and not all(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k: v for k, v in strip_prefixes(state).items() if not k.startswith("fc.")}
    arch = infer_arch(state)
    if arch is None:
        raise PixelSSLError(f"{where} does not hold a torchvision ResNet ({', '.join(RESNETS)}) backbone; "
                            "export supports those only")
    return state, arch


def _from_run(run: Path) -> ExportSource:
    if not (run / "config.yaml").is_file():
        raise PixelSSLError(f"'{run}' is a folder but not a run directory: it has no config.yaml")
    folder = run / "checkpoints"
    if (folder / "last.pt").is_file() or step_checkpoints(folder):
        state, path = load_newest_valid(folder)
        model = state.get("model")
        if not isinstance(model, dict):
            raise PixelSSLError(f"checkpoint '{path}' has no model state")
        backbone, arch = _resnet_state(model, f"checkpoint '{path}'")
        method = str(state.get("config", {}).get("method", {}).get("name", ""))
        extra = method_class(method).extra_weights(model) if method else {}
        return ExportSource(backbone, arch, f"{path} (step {state.get('step')})", run / "export", arch, extra)
    weights = run / BACKBONE_FILE
    if not weights.is_file():
        raise PixelSSLError(f"run directory '{run}' has neither checkpoints nor {BACKBONE_FILE}")
    backbone, arch = _resnet_state(read_state_dict(weights), f"'{weights}'")
    extra = {p.name: read_state_dict(p) for p in sorted(run.glob("*.safetensors")) if p.name != BACKBONE_FILE}
    return ExportSource(backbone, arch, str(weights), run / "export", arch, extra)


def load_source(spec: str | Path, from_format: str | None = None) -> ExportSource:
    """The backbone (and extra weight files) of a run directory or a weights file, for export; ``from_format``
    reads a released checkpoint of that kind (``pixelssl.export.importers``, online encoder)."""
    path = Path(spec).expanduser()
    if from_format:
        imported = import_checkpoint(path, from_format)
        return ExportSource(imported.backbone, imported.arch, f"{path} (--from {from_format}, {imported.encoder})",
                            path.parent, f"{path.stem}_{imported.arch}")
    if path.is_dir():
        return _from_run(path)
    if not path.is_file():
        raise PixelSSLError(f"'{path}' is neither a run directory nor a weights file")
    try:
        state = read_state_dict(path)
    except ValueError as exc:
        raise PixelSSLError(str(exc)) from exc
    except Exception as exc:  # e.g. a truncated .safetensors header
        raise PixelSSLError(f"cannot read weights file '{path}': {str(exc).strip().splitlines()[0]}") from exc
    backbone, arch = _resnet_state(state, f"'{path}'")
    return ExportSource(backbone, arch, str(path), path.parent, f"{path.stem}_{arch}")
