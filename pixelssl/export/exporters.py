"""``export(source, to, out)``: write a pre-trained ResNet for torchvision, timm, detectron2 or as safetensors.

- ``torchvision``: a ``.pth`` state dict for ``torchvision.models.resnetXX(weights=None)``; ``load_state_dict(sd,
  strict=False)`` reports only ``fc.weight`` / ``fc.bias`` missing.
- ``timm``: the same tensors for ``timm.create_model("resnetXX")`` (timm uses torchvision's names; only ``fc``
  missing).
- ``detectron2``: a ``.pkl`` ``{"model": {name: float32 ndarray}, "__author__": "pixelssl", "matching_heuristics":
  True}`` in detectron2's ResNet names, the format its ``DetectionCheckpointer`` reads for non-Caffe2 files
  (names matched to ``backbone.bottom_up.*`` by suffix). Use it with ``MODEL.RESNETS.STRIDE_IN_1X1 False`` (torchvision
  puts the stride in the 3x3 conv), ``INPUT.FORMAT RGB``, ``MODEL.PIXEL_MEAN [123.675, 116.28, 103.53]``,
  ``MODEL.PIXEL_STD [58.395, 57.12, 57.375]`` (pixelssl's ImageNet normalisation), and for ResNet-18/34
  ``MODEL.RESNETS.DEPTH 18/34``, ``MODEL.RESNETS.RES2_OUT_CHANNELS 64``.
- ``safetensors``: the backbone in torchvision's names (as ``backbone.safetensors`` of a run).

Extra weight files of the source (pixpro_fpn's ``fpn.safetensors`` / ``fcos_head.safetensors``, in torchvision
FCOS's names) are written beside a ``torchvision`` or ``safetensors`` export.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from pixelssl.errors import PixelSSLError
from pixelssl.export.keymaps import to_detectron2
from pixelssl.export.source import ExportSource, load_source
from pixelssl.io import atomic_write, save_weights

log = logging.getLogger(__name__)

# format -> (allowed output suffixes, the default one); detectron2 reads pickles only from files ending in .pkl
SUFFIXES = {"torchvision": (".pth", ".pt"), "timm": (".pth", ".pt"), "detectron2": (".pkl",),
            "safetensors": (".safetensors",)}
FORMATS = tuple(SUFFIXES)
_WITH_EXTRAS = ("torchvision", "safetensors")


def _write_backbone(source: ExportSource, to: str, path: Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in source.backbone.items()}
    if to in ("torchvision", "timm"):
        atomic_write(path, lambda handle: torch.save(state, handle))
    elif to == "detectron2":
        payload = {"model": to_detectron2(state), "__author__": "pixelssl", "matching_heuristics": True}
        atomic_write(path, lambda handle: pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL))
    else:
        save_weights(state, path)


def output_path(source: ExportSource, to: str, out: str | Path | None) -> Path:
    """``--out`` checked against the format's suffixes, or ``<default dir>/<stem>_<format><suffix>``."""
    suffixes = SUFFIXES[to]
    if out is None:
        return source.default_dir / f"{source.stem}_{to}{suffixes[0]}"
    path = Path(out).expanduser()
    if path.suffix not in suffixes:
        raise PixelSSLError(f"--out '{path}': a {to} export must end in {' or '.join(suffixes)}")
    return path


def export(spec: str | Path, to: str, out: str | Path | None = None, from_format: str | None = None) -> list[Path]:
    """Export the backbone of a run directory or weights file ``spec`` in format ``to``; returns the files written.
    ``from_format`` reads ``spec`` as a released checkpoint (``pixelssl.export.importers``)."""
    if to not in SUFFIXES:
        raise PixelSSLError(f"unknown export format '{to}'; choose from {', '.join(FORMATS)}")
    source = load_source(spec, from_format)
    path = output_path(source, to, out)
    log.info("exporting the %s backbone of %s as %s", source.arch, source.origin, to)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_backbone(source, to, path)
    written = [path]
    for name, tensors in source.extra.items():
        if to not in _WITH_EXTRAS:
            log.info("%s not exported with --to %s (its names are torchvision FCOS's)", name, to)
            continue
        extra_path = path.parent / name
        if extra_path.resolve() != path.resolve():
            save_weights(tensors, extra_path)
            written.append(extra_path)
    return written
