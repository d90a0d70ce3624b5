"""Side-by-side evaluation: trained generators vs OpenCV's Telea and Navier-Stokes inpainting on seeded holes.

Every method fills the same centre crops with the same holes (drawn from one seeded generator), and is scored
with ``metrics.image_metrics`` on the completed image (known pixels are kept, so only the hole differs).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from pixelssl.errors import DataError
from pixelssl.inpaint.fill import fill_images
from pixelssl.inpaint.masks import sample_training_masks
from pixelssl.inpaint.metrics import METRICS, image_metrics
from pixelssl.inpaint.networks import InpaintGenerator
from pixelssl.inpaint.train import fit_short_side

CLASSICAL = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
Filler = Callable[[Tensor, Tensor], Tensor]  # uint8 (B, 3, H, W), bool (B, 1, H, W) -> uint8 (B, 3, H, W)


def opencv_filler(method: str, radius: int = 3) -> Filler:
    """Fill with ``cv2.inpaint`` (Telea 2004 fast marching, or Bertalmio et al. 2001 Navier-Stokes), image by image."""
    flag = CLASSICAL[method]

    def fill(images: Tensor, holes: Tensor) -> Tensor:
        out = [cv2.inpaint(np.ascontiguousarray(img.permute(1, 2, 0).numpy()), hole[0].numpy().astype(np.uint8) * 255,
                           radius, flag) for img, hole in zip(images, holes)]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)

    return fill


def generator_filler(generator: InpaintGenerator) -> Filler:
    """Fill with a trained DeepFill generator."""
    return lambda images, holes: fill_images(generator, images, holes)[0]


def evaluation_set(source, num_images: int, size: int, mask_kind: str, seed: int) -> tuple[Tensor, Tensor]:
    """The first ``num_images`` images as ``size`` centre crops (uint8) and their seeded holes (bool)."""
    count = min(num_images, len(source))
    if count == 0:
        raise DataError("the evaluation set is empty")
    images = torch.stack([TF.center_crop(fit_short_side(source.load(i), size), [size, size]) for i in range(count)])
    generator = torch.Generator().manual_seed(seed)
    _, holes = sample_training_masks(count, size, size, mask_kind, size // 2, size // 8, generator)
    return images, holes > 0


def evaluate_fillers(fillers: dict[str, Filler], images: Tensor, holes: Tensor,
                     batch_size: int = 4) -> dict[str, dict[str, float]]:
    """Mean of each metric (and seconds per image) for every filler on the same images and holes."""
    results: dict[str, dict[str, float]] = {}
    original = images.float() / 255
    for name, fill in fillers.items():
        started = time.perf_counter()
        completed = torch.cat([fill(images[i:i + batch_size], holes[i:i + batch_size])
                               for i in range(0, images.shape[0], batch_size)])
        seconds = time.perf_counter() - started
        completed = torch.where(holes, completed, images).float() / 255  # known pixels exactly as the input
        scores = image_metrics(completed, original)
        results[name] = {k: float(scores[k].mean()) for k in METRICS}
        results[name]["seconds_per_image"] = seconds / images.shape[0]
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per method; L1, L2 and TV in percent as in the DeepFill v1 paper."""
    lines = ["| method | mean L1 (%) | mean L2 (%) | PSNR (dB) | TV (%) | SSIM | s / image |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {100 * r['l1']:.2f} | {100 * r['l2']:.3f} | {r['psnr']:.2f} | {100 * r['tv']:.2f} "
                     f"| {r['ssim']:.4f} | {r['seconds_per_image']:.3f} |")
    return "\n".join(lines)
