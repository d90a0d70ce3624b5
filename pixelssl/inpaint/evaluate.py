"""Side-by-side evaluation: trained generators vs OpenCV's Telea and Navier-Stokes inpainting on seeded holes.

Every method fills the same centre crops with the same holes (drawn from one seeded generator), and is scored
with ``metrics.image_metrics`` on the completed image (known pixels are kept, so only the hole differs) and with
``metrics.hole_metrics`` over the hole alone.

Hole kinds (``evaluation_holes``): ``rect`` / ``stroke`` / ``mixed`` are the training holes (a box of half the
side, shrunk by up to a sixteenth per side, or strokes inside it); ``large`` is one rectangle per image whose
height and width are drawn uniformly in [3/8, 1/2] of the side (96-128 px at 256 px), placed uniformly;
``freeform`` is 1-6 thick random polylines of 2-10 vertices anywhere in the image (``masks.stroke_holes`` over the
whole image, widths scaled from 4-24 px at 256 px; 11% of the image on average at 256 px, 0.3-29%).
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
from pixelssl.inpaint.images import fit_short_side
from pixelssl.inpaint.masks import boxes_to_mask, sample_training_masks, stroke_holes
from pixelssl.inpaint.metrics import HOLE_METRICS, METRICS, hole_metrics, image_metrics
from pixelssl.inpaint.networks import InpaintGenerator

CLASSICAL = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
Filler = Callable[[Tensor, Tensor], Tensor]  # uint8 (B, 3, H, W), bool (B, 1, H, W) -> uint8 (B, 3, H, W)
HOLE_KINDS = ("rect", "stroke", "mixed", "large", "freeform")


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


def large_rect_holes(count: int, size: int, generator: torch.Generator, low: int | None = None,
                     high: int | None = None) -> Tensor:
    """One rectangle per image of a ``size`` square, (B, 1, size, size) bool: height and width each uniform in
    [low, high] (default 3/8 and 1/2 of ``size``: 96-128 px at 256 px), the position uniform over where it fits."""
    low = round(size * 3 / 8) if low is None else low
    high = size // 2 if high is None else high
    if not 1 <= low <= high <= size:
        raise ValueError(f"rectangle sides {low}-{high} do not fit a {size}px image")
    sides = torch.randint(low, high + 1, (count, 2), generator=generator)
    top = (torch.rand(count, generator=generator) * (size - sides[:, 0] + 1)).long()
    left = (torch.rand(count, generator=generator) * (size - sides[:, 1] + 1)).long()
    return boxes_to_mask(torch.stack([top, left, sides[:, 0], sides[:, 1]], dim=1), size, size) > 0


def freeform_holes(count: int, size: int, generator: torch.Generator) -> Tensor:
    """Free-form strokes anywhere in a ``size`` square, (B, 1, size, size) bool: ``masks.stroke_holes`` with the
    whole image as the box (1-6 polylines of 2-10 vertices, steps up to a third of the side), its 4-24 px widths
    scaled by size / 256."""
    whole = torch.tensor([[0, 0, size, size]]).expand(count, 4)
    return stroke_holes(whole, size, size, generator, max_strokes=6, max_vertices=10,
                        max_width=max(6, round(24 * size / 256))) > 0


def evaluation_holes(count: int, size: int, mask_kind: str, seed: int) -> Tensor:
    """``count`` seeded holes of one kind (``HOLE_KINDS``, module docstring) for ``size`` squares, bool (B, 1, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    if mask_kind == "large":
        return large_rect_holes(count, size, generator)
    if mask_kind == "freeform":
        return freeform_holes(count, size, generator)
    if mask_kind not in HOLE_KINDS:
        raise ValueError(f"unknown hole kind {mask_kind!r} ({', '.join(HOLE_KINDS)})")
    _, holes = sample_training_masks(count, size, size, mask_kind, size // 2, size // 8, generator)
    return holes > 0


def evaluation_images(source, num_images: int, size: int) -> Tensor:
    """The first ``num_images`` images of ``source`` as ``size`` centre crops, uint8 (B, 3, size, size); an image
    whose shorter side is below ``size`` is upscaled first."""
    count = min(num_images, len(source))
    if count == 0:
        raise DataError("the evaluation set is empty")
    return torch.stack([TF.center_crop(fit_short_side(source.load(i), size), [size, size]) for i in range(count)])


def evaluation_set(source, num_images: int, size: int, mask_kind: str, seed: int) -> tuple[Tensor, Tensor]:
    """The first ``num_images`` images as ``size`` centre crops (uint8) and their seeded holes (bool)."""
    images = evaluation_images(source, num_images, size)
    return images, evaluation_holes(images.shape[0], size, mask_kind, seed)


def evaluate_fillers(fillers: dict[str, Filler], images: Tensor, holes: Tensor, batch_size: int = 4,
                     per_image: tuple[str, ...] = ()) -> dict[str, dict]:
    """Mean of each metric (``METRICS`` over the whole completed image, ``HOLE_METRICS`` over the hole; nan
    values, as ``hole_ssim`` of a hole only at the border, are left out of the mean) and seconds per image, for
    every filler on the same images and holes. The metrics named in ``per_image`` are also given image by image,
    as lists under ``results[name]["per_image"]``."""
    results: dict[str, dict] = {}
    original = images.float() / 255
    for name, fill in fillers.items():
        started = time.perf_counter()
        completed = torch.cat([fill(images[i:i + batch_size], holes[i:i + batch_size])
                               for i in range(0, images.shape[0], batch_size)])
        seconds = time.perf_counter() - started
        completed = torch.where(holes, completed, images).float() / 255  # known pixels exactly as the input
        scores = image_metrics(completed, original) | hole_metrics(completed, original, holes)
        results[name] = {k: float(scores[k].nanmean()) for k in (*METRICS, *HOLE_METRICS)}
        results[name]["seconds_per_image"] = seconds / images.shape[0]
        if per_image:
            results[name]["per_image"] = {k: [float(v) for v in scores[k]] for k in per_image}
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per method, the hole's scores first, then the whole image's; L1, L2 and TV in
    percent as in the DeepFill v1 paper."""
    lines = ["| method | hole L1 (%) | hole PSNR (dB) | hole SSIM | mean L1 (%) | mean L2 (%) | PSNR (dB) | TV (%) "
             "| SSIM | s / image |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        hole = (f"{100 * r['hole_l1']:.2f} | {r['hole_psnr']:.2f} | {r['hole_ssim']:.4f}" if "hole_l1" in r
                else "- | - | -")
        lines.append(f"| {name} | {hole} | {100 * r['l1']:.2f} | {100 * r['l2']:.3f} | {r['psnr']:.2f} "
                     f"| {100 * r['tv']:.2f} | {r['ssim']:.4f} | {r['seconds_per_image']:.3f} |")
    return "\n".join(lines)
