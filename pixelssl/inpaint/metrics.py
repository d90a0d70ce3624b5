"""Inpainting quality metrics on images in [0, 1]: mean L1, mean L2, PSNR, total variation and SSIM, over the whole
image or over the hole only.

The DeepFill v1 paper reports mean L1 / L2 error, PSNR and total-variation loss of the completed image against
the original; SSIM (Wang et al., IEEE TIP 2004) is the standard 11 x 11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, computed per channel over 'valid' window positions and averaged, as the reference code.

Whole-image scores of a completed image are diluted by the known pixels (kept exactly, error 0); ``hole_metrics``
scores the hole alone: L1 and PSNR over the hole's pixels, SSIM as the mean of the SSIM map over the window
positions centred in the hole (those windows also see up to 5 px of known surroundings, which is how SSIM judges
whether a fill joins its border).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

METRICS = ("l1", "l2", "psnr", "tv", "ssim")
HOLE_METRICS = ("hole_l1", "hole_psnr", "hole_ssim")
MSE_FLOOR = 1e-10  # PSNR's MSE floor: a perfect fill scores 10 log10(1 / 1e-10) = 100 dB, not inf


def mean_l1(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean absolute error, (B,)."""
    return (x - y).abs().flatten(1).mean(dim=1)


def mean_l2(x: Tensor, y: Tensor) -> Tensor:
    """Per-image mean squared error, (B,)."""
    return (x - y).pow(2).flatten(1).mean(dim=1)


def psnr(x: Tensor, y: Tensor, peak: float = 1.0) -> Tensor:
    """Per-image peak signal-to-noise ratio in dB, ``10 log10(peak^2 / MSE)`` (MSE floored at 1e-10), (B,)."""
    return 10 * torch.log10(peak ** 2 / mean_l2(x, y).clamp(min=MSE_FLOOR))


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


def ssim_map(x: Tensor, y: Tensor, window_size: int = 11, sigma: float = 1.5, peak: float = 1.0,
             k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """SSIM index of (B, C, H, W) images at every 'valid' window position, float64 (B, C, H - w + 1, W - w + 1);
    entry (i, j) is the window centred on pixel (i + (w - 1) // 2, j + (w - 1) // 2)."""
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
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim(x: Tensor, y: Tensor, window_size: int = 11, sigma: float = 1.5, peak: float = 1.0,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Per-image SSIM of (B, C, H, W) images (Wang et al. 2004): mean over channels and valid window positions."""
    return ssim_map(x, y, window_size, sigma, peak, k1, k2).flatten(1).mean(dim=1).float()


def hole_metrics(completed: Tensor, original: Tensor, hole: Tensor, window_size: int = 11) -> dict[str, Tensor]:
    """Scores of the fill alone: (B, C, H, W) images in [0, 1], bool (B, 1, H, W) holes -> per-image (B,) values.

    The completed image's known pixels are first replaced by the original's, so nothing outside the hole changes
    any score. ``hole_l1``: mean absolute error over the hole's pixels and channels; ``hole_psnr``: PSNR of the
    hole's mean squared error (floored at ``MSE_FLOOR``: a perfect fill is 100 dB); ``hole_ssim``: mean of the SSIM
    map (``ssim_map``) over the channels and the window positions whose centre pixel is in the hole. An image with
    an empty hole scores nan, as does ``hole_ssim`` when no hole pixel is a window centre (a hole only within
    ``window_size // 2`` px of the border).
    """
    hole = hole.bool()
    if hole.shape[0] != completed.shape[0] or hole.shape[-2:] != completed.shape[-2:] or hole.shape[1] != 1:
        raise ValueError(f"the holes {tuple(hole.shape)} must be (B, 1, H, W) for images {tuple(completed.shape)}")
    completed = torch.where(hole, completed, original).double()
    original = original.double()
    weight = hole.double().expand_as(completed)
    count = weight.flatten(1).sum(dim=1)
    diff = (completed - original) * weight
    l1 = diff.abs().flatten(1).sum(dim=1) / count
    mse = diff.pow(2).flatten(1).sum(dim=1) / count
    value_psnr = torch.where(count > 0, 10 * torch.log10(1 / mse.clamp(min=MSE_FLOOR)), torch.nan)
    r = (window_size - 1) // 2
    index = ssim_map(completed, original, window_size)
    centres = hole[..., r:r + index.shape[-2], r:r + index.shape[-1]].double().expand_as(index)
    value_ssim = (index * centres).flatten(1).sum(dim=1) / centres.flatten(1).sum(dim=1)  # 0 / 0 = nan
    return {"hole_l1": l1.float(), "hole_psnr": value_psnr.float(), "hole_ssim": value_ssim.float()}


def image_metrics(completed: Tensor, original: Tensor) -> dict[str, Tensor]:
    """All metrics of completed vs original images (B, C, H, W) in [0, 1]; each value is per image, (B,).

    ``tv`` is the total variation of the completed image (the paper's "TV loss"); lower is smoother.
    """
    return {"l1": mean_l1(completed, original), "l2": mean_l2(completed, original), "psnr": psnr(completed, original),
            "tv": total_variation(completed), "ssim": ssim(completed, original)}
