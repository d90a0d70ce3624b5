"""The BYOL photometric augmentation applied to a whole batch on the training device (``data.device_augment``).

The random parameters of every view are drawn in the loader from the sample's own seed, by the same calls in
the same order as the CPU transforms of ``pixelssl.data.augment`` (torchvision's ColorJitter ``make_params`` and
the ``torch.rand`` draws of RandomApply / RandomGrayscale / RandomSolarize / our blur), so a sample gets the very
same parameters on either path and batches still depend only on (seed, step). They travel with the uint8 views
as one float64 row per view (``photo1`` / ``photo2``, columns below); ``BatchedPhotometric`` then applies them
to the batch with per-image factors, with the same formulas as the CPU path (agreement to float rounding is tested).

Cost per batch: every image passes through each colour-jitter op once (brightness / contrast / saturation are
blends ``clamp(f * x + (1 - f) * ref)`` with ref = 0, the grey mean, or the grey image, done for the whole batch
per position of the random op order; hue only on the images that draw it there); grayscale, blur and solarize
touch only the images that draw them. All index bookkeeping happens on the host, so nothing waits on the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pixelssl.data.augment import (
    AUGMENTATIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SOLARIZE_THRESHOLD,
    ColorJitter,
    RandomGaussianBlur,
    adjust_hue,
    blur_kernel_size,
)

# Columns of a parameter row.
JITTER = 0  # 1 when colour jitter applies (p = 0.8)
ORDER = slice(1, 5)  # the op applied at positions 0..3: 0 brightness, 1 contrast, 2 saturation, 3 hue
FACTORS = slice(5, 9)  # brightness, contrast, saturation, hue factors
GRAY = 9  # 1 when converted to grayscale (p = 0.2)
BLUR = 10  # 1 when blurred (p = 1.0 view 0, 0.1 view 1)
SIGMA = 11  # blur sigma ~ U[0.1, 2.0]
SOLARIZE = 12  # 1 when solarized (p = 0 view 0, 0.2 view 1)
NUM_PARAMS = 13
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)

JITTER_P, GRAY_P, SOLARIZE_P = 0.8, 0.2, 0.2
BLUR_P = (1.0, 0.1)
_JITTER = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
_BLUR = (RandomGaussianBlur(p=BLUR_P[0]), RandomGaussianBlur(p=BLUR_P[1]))


def sample_byol_params(view: int) -> Tensor:
    """One view's parameter row, drawn from torch's global RNG exactly as ``byol_augment(view)`` draws them."""
    if view not in (0, 1):
        raise ValueError(f"view must be 0 or 1 (got {view})")
    row = torch.zeros(NUM_PARAMS, dtype=torch.float64)
    if not torch.rand(1) >= JITTER_P:  # v2.RandomApply: skipped when rand >= p
        jitter = _JITTER.make_params([])
        row[JITTER] = 1
        row[ORDER] = jitter["fn_idx"].double()
        row[FACTORS] = torch.tensor([jitter["brightness_factor"], jitter["contrast_factor"],
                                     jitter["saturation_factor"], jitter["hue_factor"]], dtype=torch.float64)
    row[GRAY] = float(not torch.rand(1) >= GRAY_P)  # v2.RandomGrayscale
    blur = _BLUR[view].make_params([])
    row[BLUR], row[SIGMA] = float(blur["apply"]), blur["sigma"]
    if view == 1:  # view 0 has no solarize transform at all (so no draw)
        row[SOLARIZE] = float(not torch.rand(1) >= SOLARIZE_P)  # v2.RandomSolarize
    return row


class ParamSampler:
    """Picklable ``() -> parameter row`` for one view (the loader calls it inside the sample's seeded RNG)."""

    def __init__(self, name: str, view: int) -> None:
        if name not in AUGMENTATIONS:
            raise ValueError(f"data.augment: unknown augmentation {name!r} (choose from {', '.join(AUGMENTATIONS)})")
        self.name, self.view = name, view

    def __call__(self) -> Tensor:
        return sample_byol_params(self.view) if self.name == "byol" else torch.zeros(0, dtype=torch.float64)


def _luma(x: Tensor) -> Tensor:
    """(B, 1, H, W) grey image with torchvision's weights and operation order."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)


def _on(device: torch.device, mask: Tensor) -> Tensor:
    """Host bool mask (B,) -> (n,) index tensor on ``device``."""
    return mask.nonzero().flatten().to(device, non_blocking=True)


def _column(values: Tensor, device: torch.device) -> Tensor:
    """Host (B,) float64 -> (B, 1, 1, 1) float32 on ``device``."""
    return values.to(torch.float32).view(-1, 1, 1, 1).to(device, non_blocking=True)


def batched_gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur of each image of (n, C, H, W) with its own sigma (n,), reflect padding, kernel ~10%
    of each side: ``augment.gaussian_blur`` for a batch (one grouped convolution per axis)."""
    n, c, h, w = x.shape
    kx, ky = blur_kernel_size(w), blur_kernel_size(h)

    def kernels(size: int) -> Tensor:  # (n * C, size)
        half = (size - 1) * 0.5
        t = torch.linspace(-half, half, size, dtype=x.dtype, device=x.device)
        pdf = torch.exp(-0.5 * (t / sigma.to(x.dtype)[:, None]) ** 2)
        return (pdf / pdf.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)

    flat = F.pad(x.reshape(1, n * c, h, w), [kx // 2, kx // 2, ky // 2, ky // 2], mode="reflect")
    flat = F.conv2d(flat, kernels(kx).view(n * c, 1, 1, kx), groups=n * c)
    flat = F.conv2d(flat, kernels(ky).view(n * c, 1, ky, 1), groups=n * c)
    return flat.view(n, c, h, w)


class BatchedPhotometric:
    """uint8 views (B, 3, H, W) on any device + their host parameter rows (B, NUM_PARAMS) -> normalised float32."""

    def __init__(self, name: str, view: int) -> None:
        if name not in AUGMENTATIONS:
            raise ValueError(f"data.augment: unknown augmentation {name!r} (choose from {', '.join(AUGMENTATIONS)})")
        self.name, self.view = name, view

    def __call__(self, images: Tensor, params: Tensor) -> Tensor:
        x = images.to(torch.float32).mul_(1.0 / 255)  # as v2.ToDtype(float32, scale=True)
        if self.name == "byol":
            x = self._byol(x, params.cpu())
        mean = x.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = x.new_tensor(IMAGENET_STD).view(3, 1, 1)
        return x.sub_(mean).div_(std)

    def _byol(self, x: Tensor, params: Tensor) -> Tensor:
        device = x.device
        jitter = params[:, JITTER] > 0
        order = params[:, ORDER].long()
        factors = params[:, FACTORS]
        for position in range(4):  # ColorJitter: each image runs its own permutation of the four ops
            op = order[:, position]
            blend = jitter & (op != HUE)
            if blend.any():
                x = self._blend(x, op, torch.where(blend, factors.gather(1, op[:, None]).squeeze(1), 1.0))
            hue = jitter & (op == HUE)
            if hue.any():
                index = _on(device, hue)
                x[index] = adjust_hue(x[index], _column(factors[hue, HUE], device).view(-1, 1, 1))
        gray = params[:, GRAY] > 0
        if gray.any():
            index = _on(device, gray)
            x[index] = _luma(x[index]).expand(-1, 3, -1, -1)
        blur = params[:, BLUR] > 0
        if blur.any():
            index = _on(device, blur)
            x[index] = batched_gaussian_blur(x[index], params[blur, SIGMA].to(device, torch.float32))
        solarize = params[:, SOLARIZE] > 0
        if solarize.any():
            index = _on(device, solarize)
            picked = x[index]
            x[index] = torch.where(picked >= SOLARIZE_THRESHOLD, 1.0 - picked, picked)
        return x

    @staticmethod
    def _blend(x: Tensor, op: Tensor, factor: Tensor) -> Tensor:
        """``clamp(f * x + (1 - f) * ref)``: ref 0 (brightness), the grey mean (contrast) or the grey image
        (saturation), as torchvision's ``_blend``; f = 1 leaves an image exactly unchanged."""
        device = x.device
        f = _column(factor, device)
        one_minus = _column(1.0 - factor, device)
        ref = torch.zeros_like(x[:, :1])
        needs_gray = (op == CONTRAST) | (op == SATURATION)
        if (needs_gray & (factor != 1)).any():
            gray = _luma(x)
            is_contrast = (op == CONTRAST).view(-1, 1, 1, 1).to(device, non_blocking=True)
            is_saturation = (op == SATURATION).view(-1, 1, 1, 1).to(device, non_blocking=True)
            ref = torch.where(is_contrast, gray.mean(dim=(-3, -2, -1), keepdim=True), ref)
            ref = torch.where(is_saturation, gray, ref)
        return x.mul(f).add_(ref * one_minus).clamp_(0, 1)


def build_device_augment(name: str) -> tuple[BatchedPhotometric, BatchedPhotometric]:
    """The two views' batched augmentations for ``data.augment`` (``byol`` | ``none``)."""
    return BatchedPhotometric(name, 0), BatchedPhotometric(name, 1)


def build_param_samplers(name: str) -> tuple[ParamSampler, ParamSampler]:
    """The two views' parameter samplers, run by the loader in place of the CPU transforms."""
    return ParamSampler(name, 0), ParamSampler(name, 1)
