"""Filling holes with a trained generator: any image size (padded to a multiple of 8, cropped back), user masks.

Example::

    generator = load_generator("runs/inpaint_demo/generator.safetensors")
    filled, flow = fill_image(generator, image_uint8, hole_bool, return_flow=True)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from pixelssl.errors import PixelSSLError
from pixelssl.inpaint.networks import InpaintGenerator
from pixelssl.inpaint.train import build_generator, to_signed, to_unit

GRID = 8  # two stride-2 convs, then contextual attention's rate 2


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
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(checkpoint, dict) or "generator" not in checkpoint:
                raise WeightsError(f"'{path}' is not an inpainting checkpoint (no 'generator' entry)")
            model_cfg, state = checkpoint["config"]["model"], checkpoint["generator"]
    except WeightsError:
        raise
    except Exception as exc:  # corrupt files surface as many exception types
        raise WeightsError(f"cannot read weights '{path}': {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    generator = build_generator(model_cfg)
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"weights '{path}' do not match the generator they describe: "
                           f"{str(exc).splitlines()[0]}") from exc
    return generator.to(device).eval()


def pad_to_multiple(x: Tensor, multiple: int = GRID) -> Tensor:
    """Pad (B, C, H, W) at the bottom/right to multiples of ``multiple``: mirrored where the image is big enough."""
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


@torch.no_grad()
def fill_images(generator: InpaintGenerator, images: Tensor, holes: Tensor,
                return_flow: bool = False) -> tuple[Tensor, Tensor | None]:
    """Complete uint8 (B, 3, H, W) images whose bool (B, 1, H, W) holes are True: uint8 results (known pixels kept)
    and, when asked, the attention flow pictures as uint8 (B, 3, H, W)."""
    device = next(generator.parameters()).device
    height, width = images.shape[-2:]
    real = pad_to_multiple(to_signed(images).to(device))
    mask = pad_to_multiple(holes.float().to(device))  # the mirrored border mirrors the hole too
    out = generator(real.contiguous(memory_format=torch.channels_last), mask, return_flow=return_flow)
    completed = out.refined * mask + real * (1 - mask)
    result = (to_unit(completed[..., :height, :width]) * 255).round().to(torch.uint8).cpu()
    flow = None
    if out.flow is not None:
        flow = F.interpolate(out.flow.float(), size=real.shape[-2:], mode="nearest")[..., :height, :width]
        flow = (flow * 255).round().clamp(0, 255).to(torch.uint8).cpu()
    return result, flow


def fill_image(generator: InpaintGenerator, image: Tensor, hole: Tensor,
               return_flow: bool = False) -> tuple[Tensor, Tensor | None]:
    """One uint8 (3, H, W) image and its bool (H, W) hole -> uint8 (3, H, W) result (and flow picture or None)."""
    if hole.shape != image.shape[-2:]:
        raise PixelSSLError(f"hole {tuple(hole.shape)} and image {tuple(image.shape[-2:])} sizes differ")
    if not bool(hole.any()):
        raise PixelSSLError("the mask has no hole pixels; nothing to fill")
    if bool(hole.all()):
        raise PixelSSLError("the mask covers the whole image; nothing is left to fill from")
    result, flow = fill_images(generator, image.unsqueeze(0), hole.view(1, 1, *hole.shape), return_flow)
    return result[0], None if flow is None else flow[0]


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write a uint8 (3, H, W) tensor as an image file (format from the suffix), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy())).save(path)
    except (ValueError, OSError) as exc:
        raise PixelSSLError(f"cannot write '{path}': {exc}") from exc
    return path
