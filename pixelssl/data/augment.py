"""Photometric augmentation of a cropped view (BYOL recipe); never changes geometry.

BYOL (Grill et al., 2020, table 6), asymmetric between the two views:

    colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1)  p = 0.8   (both views)
    grayscale                                                              p = 0.2   (both views)
    Gaussian blur, kernel ~10% of the side, sigma ~ U[0.1, 2.0]            p = 1.0 / 0.1
    solarize at the midpoint                                               p = 0.0 / 0.2
    normalise with ImageNet mean / std

Input is a (3, h, w) uint8 view; output is float32 (3, h, w). Everything runs in float32 after one
conversion (no re-quantisation between steps). All randomness comes from torch's global RNG, so the
data pipeline makes a sample reproducible by seeding it before the call. Two steps are reimplemented
for speed with the same parameter distributions as torchvision's: hue rotation (torchvision converts
the whole image to HSV and back) and the blur (separable instead of a dense k x k kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AUGMENTATIONS = ("byol", "none")
SOLARIZE_THRESHOLD = 128 / 255  # midpoint of the uint8 range, expressed in [0, 1]

Augment = Callable[[Tensor], Tensor]


def normalize(x: Tensor) -> Tensor:
    """ImageNet-normalised float32 copy of an image (uint8 in [0, 255] or float in [0, 1]), (..., 3, H, W)."""
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    mean = x.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def denormalize(x: Tensor) -> Tensor:
    """Inverse of ``normalize``: float image in [0, 1] (clamped), for plots and reports."""
    mean = x.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def adjust_hue(image: Tensor, hue_factor: float | Tensor) -> Tensor:
    """Rotate hue by ``hue_factor`` turns, as torchvision's ``adjust_hue`` on float images in [0, 1], but ~5x faster.

    HSV hue rotation keeps value (max) and chroma (max - min) per pixel, so the output is
    ``max - chroma * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 * hue') mod 6``, n = 5, 3, 1 for r, g, b.
    ``hue_factor`` may be a tensor broadcasting against (..., H, W), e.g. (B, 1, 1): one factor per image.
    """
    if not isinstance(hue_factor, Tensor) and hue_factor == 0:
        return image
    r, g, b = image.unbind(-3)
    maxc, _ = image.max(dim=-3)
    minc, _ = image.min(dim=-3)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # Hue in sextants [0, 6): which channel is the max decides the sector (torchvision's order: r, then g, then b).
    hue = torch.where(
        maxc == r, (g - b) / safe, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = torch.remainder(hue + 6 * hue_factor, 6).unsqueeze(-3)  # (..., 1, H, W)
    n = image.new_tensor([5.0, 3.0, 1.0]).view(3, 1, 1)
    k = torch.remainder(n + hue, 6)
    ramp = torch.minimum(k, 4 - k).clamp_(0, 1)
    return maxc.unsqueeze(-3) - chroma.unsqueeze(-3) * ramp


def gaussian_blur(image: Tensor, kernel_size: tuple[int, int], sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding, (..., 3, H, W) float; same result as torchvision's."""
    kx, ky = kernel_size
    channels = image.shape[-3]
    x = image.reshape(-1, channels, *image.shape[-2:])

    def kernel1d(size: int) -> Tensor:
        half = (size - 1) * 0.5
        t = torch.linspace(-half, half, size, dtype=image.dtype)
        pdf = torch.exp(-0.5 * (t / sigma) ** 2)
        return pdf / pdf.sum()

    x = F.pad(x, [kx // 2, kx // 2, ky // 2, ky // 2], mode="reflect")
    x = F.conv2d(x, kernel1d(kx).view(1, 1, 1, kx).expand(channels, 1, 1, kx), groups=channels)
    x = F.conv2d(x, kernel1d(ky).view(1, 1, ky, 1).expand(channels, 1, ky, 1), groups=channels)
    return x.reshape(image.shape)


def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
    """Odd kernel size nearest to ``fraction`` of an image side (BYOL: 23 px at 224 px), at least 3, below 2 * side."""
    size = 2 * round((fraction * side - 1) / 2) + 1
    return max(3, min(size, side if side % 2 else side - 1))


class ColorJitter(v2.ColorJitter):
    """torchvision's ColorJitter (same random order and factors) with the fast ``adjust_hue``."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        output = inpt
        for fn_id in params["fn_idx"].tolist():
            if fn_id == 0 and params["brightness_factor"] is not None:
                output = TF.adjust_brightness(output, params["brightness_factor"])
            elif fn_id == 1 and params["contrast_factor"] is not None:
                output = TF.adjust_contrast(output, params["contrast_factor"])
            elif fn_id == 2 and params["saturation_factor"] is not None:
                output = TF.adjust_saturation(output, params["saturation_factor"])
            elif fn_id == 3 and params["hue_factor"] is not None:
                output = adjust_hue(output, params["hue_factor"])
        return output


class RandomGaussianBlur(v2.Transform):
    """With probability ``p``, Gaussian blur with sigma ~ U[sigma] and a kernel ~``kernel_fraction`` of each side."""

    def __init__(self, p: float, sigma: tuple[float, float] = (0.1, 2.0), kernel_fraction: float = 0.1) -> None:
        super().__init__()
        self.p = p
        self.sigma = sigma
        self.kernel_fraction = kernel_fraction

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        apply = bool(torch.rand(()) < self.p)
        sigma = float(torch.empty(()).uniform_(self.sigma[0], self.sigma[1])) if apply else 0.0
        return dict(apply=apply, sigma=sigma)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"]:
            return inpt
        h, w = inpt.shape[-2:]
        kernel = (blur_kernel_size(w, self.kernel_fraction), blur_kernel_size(h, self.kernel_fraction))
        return gaussian_blur(inpt, kernel, params["sigma"])


def byol_augment(view: int) -> Augment:
    """BYOL photometric recipe for view 0 or 1: uint8 (3, h, w) -> normalised float32 (3, h, w)."""
    if view not in (0, 1):
        raise ValueError(f"view must be 0 or 1 (got {view})")
    steps: list[Callable] = [
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomApply([ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        RandomGaussianBlur(p=1.0 if view == 0 else 0.1),
    ]
    if view == 1:  # never solarize view 0 (p = 0): no transform at all, so "never" is literal
        steps.append(v2.RandomSolarize(threshold=SOLARIZE_THRESHOLD, p=0.2))
    steps.append(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return v2.Compose(steps)


def no_augment() -> Augment:
    """Only uint8 -> float32 conversion and ImageNet normalisation (``data.augment=none``)."""
    return normalize


def build_augment(name: str, view: int) -> Augment:
    """Photometric augmentation by config name (``byol`` | ``none``) for view 0 or 1."""
    if name == "byol":
        return byol_augment(view)
    if name == "none":
        return no_augment()
    raise ValueError(f"data.augment: unknown augmentation {name!r} (choose from {', '.join(AUGMENTATIONS)})")
