"""Reading a trained generator back from its weights file (``generator.safetensors`` with its config, or a training
checkpoint): the config and the tensors are checked on the meta device before anything is built.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from pixelssl.errors import PixelSSLError, WeightsFileError
from pixelssl.inpaint.networks import InpaintGenerator
from pixelssl.inpaint.train import build_generator
from pixelssl.models.safe_load import load_torch


class WeightsError(PixelSSLError):
    """A weights file that is missing or is not an inpainting generator."""


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> InpaintGenerator:
    """A generator from ``generator.safetensors`` (config in its metadata) or a training checkpoint (``.pt``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                state = {k: handle.get_tensor(k) for k in handle.keys()}
            if "pixelssl_inpaint" not in meta:
                raise WeightsError(f"'{path}' has no pixelssl_inpaint metadata; is it an inpainting generator?")
            model_cfg = json.loads(meta["pixelssl_inpaint"])
        else:
            checkpoint = load_torch(path)  # weights_only; a file holding pickled code is refused, saying why
            if not isinstance(checkpoint, dict) or "generator" not in checkpoint:
                raise WeightsError(f"'{path}' is not an inpainting checkpoint (no 'generator' entry)")
            model_cfg, state = checkpoint["config"]["model"], checkpoint["generator"]
    except (WeightsError, WeightsFileError):
        raise
    except Exception as exc:  # corrupt files surface as many exception types
        raise WeightsError(f"cannot read weights '{path}': {_first_line(exc)}") from exc
    return _described_generator(path, model_cfg, state).to(device).eval()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)


def _described_generator(path: Path, model_cfg: object, state: object) -> InpaintGenerator:
    """The generator the config stored with the weights describes, loaded with them: the config is range-checked as
    ``model.*`` keys and the tensors' names and shapes compared on the meta device first, so a damaged or hostile
    file is a one-line error and a config naming a huge model allocates nothing."""
    if not isinstance(model_cfg, dict):
        raise WeightsError(f"'{path}': the generator config stored with the weights is a {type(model_cfg).__name__}, "
                           "not a mapping of model.* keys")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise WeightsError(f"'{path}': the generator weights are not a mapping of names to tensors")
    from pixelssl.config import ConfigError, load_config, schema_keys
    from pixelssl.inpaint.config import InpaintConfig
    from pixelssl.inpaint.train import LEGACY_MODEL_KEYS

    known = {key.removeprefix("model.") for key in schema_keys(InpaintConfig) if key.startswith("model.")}
    built = {**LEGACY_MODEL_KEYS, **{k: v for k, v in model_cfg.items() if k in known}}
    try:
        load_config(InpaintConfig, base={"model": built})
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_generator(model_cfg).state_dict().items()}
    except (ConfigError, TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"weights '{path}' describe a generator pixelssl cannot build: {_first_line(exc)}") from exc
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    wrong = [k for k in expected if k in shapes and shapes[k] != expected[k]]
    if wrong or missing or unexpected:
        detail = (f"'{wrong[0]}' has shape {shapes[wrong[0]]}, the generator {expected[wrong[0]]}" if wrong
                  else f"missing {len(missing)} tensors, e.g. '{missing[0]}'" if missing
                  else f"{len(unexpected)} unexpected tensors, e.g. '{unexpected[0]}'")
        raise WeightsError(f"weights '{path}' do not match the generator they describe: {detail}")
    generator = build_generator(model_cfg)
    try:
        generator.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:  # e.g. a tensor of a dtype that does not copy
        raise WeightsError(f"weights '{path}' do not match the generator they describe: {_first_line(exc)}") from exc
    return generator
