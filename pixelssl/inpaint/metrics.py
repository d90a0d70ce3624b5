"""Inpainting quality metrics on images in [0, 1]: mean L1, mean L2, PSNR, total variation and SSIM.

The DeepFill v1 paper reports mean L1 / L2 error, PSNR and total-variation loss of the completed image against
the original; SSIM (Wang et al., IEEE TIP 2004) is the standard 11 x 11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, computed per channel over 'valid' window positions and averaged, as the reference code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

METRICS = ("l1", "l2", "psnr", "tv", "ssim")


def mean_l1(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean absolute error, (B,)."""
    return (x - y).abs().flatten(1).mean(dim=1)


def mean_l2(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean squared error, (B,)."""
    return (x - y).pow(2).flatten(1).mean(dim=1)


def psnr(x: Tensor, y: Tensor, peak: float = 1.0) -> Tensor:
    """Per-image peak signal-to-noise ratio in dB, ``10 log10(peak^2 / MSE)`` (MSE floored at 1e-10), (B,)."""
    return 10 * torch.log10(peak ** 2 / mean_l2(x, y).clamp(min=1e-10))


def total_variation(x: Tensor) -> Tensor:
    """Per-image anisotropic total variation: mean |vertical difference| + mean |horizontal difference|, (B,)."""
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(dim=1)
    dh = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(dim=1)
    return dv + dh


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float64) -> Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (the separable SSIM window)."""
    taps = torch.arange(size, dtype=dtype) - (size - 1) / 2
    window = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    return window / window.sum()


def ssim(x: Tensor, y: Tensor, window_size: int = 11, sigma: float = 1.5, peak: float = 1.0,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Per-image SSIM of (B, C, H, W) images (Wang et al. 2004): mean over channels and valid window positions."""
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"SSIM needs images of at least {window_size}x{window_size} (got {tuple(x.shape[-2:])})")
    channels = x.shape[1]
    g = gaussian_window(window_size, sigma, torch.float64).to(x.device)
    rows = g.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = g.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    blur = lambda t: F.conv2d(F.conv2d(t, rows, groups=channels), cols, groups=channels)  # noqa: E731
    x, y = x.double(), y.double()
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(dim=1).float()


def image_metrics(completed: Tensor, original: Tensor) -> dict[str, Tensor]:
    """All metrics of completed vs original images (B, C, H, W) in [0, 1]; each value is per image, (B,).

    ``tv`` is the total variation of the completed image (the paper's "TV loss"); lower is smoother.
    """
    return {"l1": mean_l1(completed, original), "l2": mean_l2(completed, original), "psnr": psnr(completed, original),
            "tv": total_variation(completed), "ssim": ssim(completed, original)}
