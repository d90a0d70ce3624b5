"""Where an evaluated backbone comes from: a run directory, a weights file, or a random-init control.

``resolve_backbone(spec, arch)`` understands

- a run directory (``config.yaml`` names ``model.backbone``; weights from ``backbone.safetensors``),
- a weights file (``.safetensors`` / ``.pt`` / ``.pth``; the architecture is ``arch`` or inferred from the tensors),
- ``random``: our random initialisation of ``arch``,
- ``torchvision``: torchvision's own ``resnetXX(weights=None)`` constructor (random init: nothing is downloaded),
  or ``torchvision:/path/to/weights.pth``, a locally stored torchvision checkpoint,
- with ``from_format`` (``--from pixpro|densecl|pixcon|moco|detectron2|torchvision``), a released checkpoint, converted
  in memory by ``pixelssl.export.importers`` (online encoder; ``pixelssl import`` writes it as safetensors),

and returns the backbone with a JSON-able description (kind, arch, path, sha256 of the weights file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from pixelssl.errors import PixelSSLError
from pixelssl.io import sha256_file
from pixelssl.models.backbones import (
    RESNETS,
    Backbone,
    build_backbone,
    infer_arch,
    load_backbone_weights,
    read_state_dict,
    strip_prefixes,
)

DEFAULT_ARCH = "resnet50"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def _seeded_build(arch: str, seed: int) -> Backbone:
    """Our backbone ``arch`` with a reproducible random initialisation (the caller's RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return build_backbone(arch)
        except ValueError as exc:
            raise PixelSSLError(str(exc)) from exc


def _from_file(path: Path, arch: str | None, seed: int) -> tuple[Backbone, str]:
    """Backbone loaded from a weights file; arch given or inferred from the file's tensors."""
    if not path.is_file():
        raise PixelSSLError(f"backbone weights '{path}' do not exist")
    if arch is None:
        try:
            arch = infer_arch(strip_prefixes(read_state_dict(path)))
        except ValueError as exc:
            raise PixelSSLError(str(exc)) from exc
        if arch is None:
            raise PixelSSLError(f"cannot tell the architecture of '{path}'; pass --arch (e.g. --arch resnet50), "
                                "or --from FORMAT for a released checkpoint")
    backbone = _seeded_build(arch, seed)
    try:
        load_backbone_weights(backbone, path)
    except ValueError as exc:
        raise PixelSSLError(f"{exc} (architecture {arch})") from exc
    return backbone, arch


def _run_arch(run: Path) -> str:
    """``model.backbone`` of a run directory's config.yaml."""
    config = run / "config.yaml"
    if not config.is_file():
        raise PixelSSLError(f"'{run}' is a folder but not a run directory: it has no config.yaml")
    try:
        arch = OmegaConf.select(OmegaConf.load(config), "model.backbone")
    except Exception as exc:
        raise PixelSSLError(f"cannot read {config}: {str(exc).splitlines()[0]}") from exc
    if not arch:
        raise PixelSSLError(f"{config} has no model.backbone")
    return str(arch)


def _torchvision_backbone(arch: str, weights: str, seed: int) -> Backbone:
    """torchvision's own constructor (optionally with a local checkpoint) converted into our Backbone."""
    import torchvision

    constructor = getattr(torchvision.models, arch, None)
    if arch not in RESNETS or constructor is None:
        raise PixelSSLError(f"--backbone torchvision supports {', '.join(RESNETS)} (got --arch {arch})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = constructor(weights=None)
    if weights:
        state = read_state_dict(weights)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            detail = f"missing e.g. '{missing[0]}'" if missing else f"unexpected e.g. '{unexpected[0]}'"
            raise PixelSSLError(f"'{weights}' is not a torchvision {arch} checkpoint ({detail})")
    backbone = _seeded_build(arch, seed)
    backbone.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")})
    return backbone


def _imported(spec: str, arch: str | None, seed: int, from_format: str) -> tuple[Backbone, dict[str, Any]]:
    """A released checkpoint (``--from FORMAT``) converted in memory; ``arch``, if given, must be the file's."""
    from pixelssl.export.importers import import_checkpoint  # lazy: the importers are only needed here

    path = Path(spec).expanduser()
    imported = import_checkpoint(path, from_format)
    if arch is not None and arch != imported.arch:
        raise PixelSSLError(f"'{path}' holds a {imported.arch} but --arch {arch} was given")
    backbone = _seeded_build(imported.arch, seed)
    backbone.load_state_dict(imported.backbone)
    return backbone, {"kind": "import", "format": from_format, "encoder": imported.encoder, "arch": imported.arch,
                      "path": str(path.resolve()), "sha256": sha256_file(path)}


def resolve_backbone(spec: str, arch: str | None = None, seed: int = 0,
                     from_format: str | None = None) -> tuple[Backbone, dict[str, Any]]:
    """(backbone, description) for a run directory, a weights file, ``random`` or ``torchvision[:PATH]``.

    ``arch`` picks the architecture of ``random`` / ``torchvision`` (default resnet50) and of weights files
    (inferred when omitted); for a run directory it must agree with the run's config. ``seed`` fixes random inits.
    ``from_format`` reads ``spec`` as a released checkpoint of that kind (``pixelssl.export.importers``).
    """
    if from_format:
        return _imported(spec, arch, seed, from_format)
    if spec == "random":
        arch = arch or DEFAULT_ARCH
        return _seeded_build(arch, seed), {"kind": "random", "arch": arch, "seed": seed}
    if spec == "torchvision" or spec.startswith("torchvision:"):
        arch = arch or DEFAULT_ARCH
        weights = spec.partition(":")[2]
        if weights:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise PixelSSLError(f"torchvision weights '{path}' do not exist")
            try:
                backbone = _torchvision_backbone(arch, str(path), seed)
            except ValueError as exc:
                raise PixelSSLError(str(exc)) from exc
            return backbone, {"kind": "torchvision", "arch": arch, "path": str(path.resolve()),
                              "sha256": sha256_file(path)}
        return _torchvision_backbone(arch, "", seed), {"kind": "torchvision", "arch": arch, "seed": seed,
                                                        "weights": "random init (torchvision constructor)"}
    path = Path(spec).expanduser()
    if path.is_dir():
        run_arch = _run_arch(path)
        if arch is not None and arch != run_arch:
            raise PixelSSLError(f"run '{path}' trained a {run_arch} but --arch {arch} was given")
        weights = path / "backbone.safetensors"
        if not weights.is_file():
            raise PixelSSLError(f"run directory '{path}' has no backbone.safetensors (has the run finished?)")
        backbone, _ = _from_file(weights, run_arch, seed)
        return backbone, {"kind": "run", "arch": run_arch, "run": str(path.resolve()), "path": str(weights.resolve()),
                          "sha256": sha256_file(weights)}
    if path.suffix in WEIGHT_SUFFIXES or path.exists():
        backbone, arch = _from_file(path, arch, seed)
        return backbone, {"kind": "file", "arch": arch, "path": str(path.resolve()), "sha256": sha256_file(path)}
    raise PixelSSLError(f"backbone '{spec}' is not a run directory, a weights file ({', '.join(WEIGHT_SUFFIXES)}), "
                        f"'random' or 'torchvision[:PATH]'")


def run_directory(spec: str) -> Path | None:
    """The run directory a backbone spec names, or None for files and controls."""
    path = Path(spec).expanduser()
    return path if path.is_dir() and (path / "config.yaml").is_file() else None
