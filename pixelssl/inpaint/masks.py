"""Hole masks (1 = hole): random boxes with rectangles or free-form strokes inside, user mask images, bounding boxes.

Training follows the release: every sample gets a ``box_size`` square box at a random position (the local critic
sees exactly this box), and the hole is the box shrunk by a random margin of up to ``max_delta // 2`` per side
(``bbox2mask``). Free-form strokes (thick random polylines, as in DeepFill v2's masks) are drawn inside the box.
Deviation: the release draws one box per batch; here every sample has its own. All randomness comes from an
explicit ``torch.Generator`` so masks depend only on the seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from pixelssl.errors import DataError


def _randint(low: int, high: int, size: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Uniform integers in [low, high] (inclusive) drawn from ``generator``."""
    return torch.randint(low, high + 1, size, generator=generator)


def random_boxes(batch: int, height: int, width: int, box_size: int, generator: torch.Generator,
                 margin: int = 0) -> Tensor:
    """Release ``random_bbox``: (B, 4) long boxes (top, left, height, width) of side ``box_size``, uniformly placed."""
    if box_size + 2 * margin > min(height, width):
        raise ValueError(f"a {box_size}px box with margin {margin} does not fit a {height}x{width} image")
    top = _randint(margin, height - margin - box_size, (batch,), generator)
    left = _randint(margin, width - margin - box_size, (batch,), generator)
    size = torch.full((batch,), box_size, dtype=torch.long)
    return torch.stack([top, left, size, size], dim=1)


def _grid(height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pixel row and column coordinates, (1, H, 1) and (1, 1, W)."""
    return torch.arange(height).view(1, height, 1), torch.arange(width).view(1, 1, width)


def boxes_to_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """(B, 4) boxes (top, left, h, w) -> (B, 1, H, W) float mask, 1 inside each box."""
    rows, cols = _grid(height, width)
    t, l, h, w = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    inside = (rows >= t) & (rows < t + h) & (cols >= l) & (cols < l + w)
    return inside.unsqueeze(1).float()


def rectangle_holes(boxes: Tensor, height: int, width: int, max_delta: int, generator: torch.Generator) -> Tensor:
    """Release ``bbox2mask``: each box shrunk by a random 0..max_delta//2 pixels per side (same on both sides)."""
    shrink_h = _randint(0, max_delta // 2, (boxes.shape[0],), generator)
    shrink_w = _randint(0, max_delta // 2, (boxes.shape[0],), generator)
    inner = torch.stack([boxes[:, 0] + shrink_h, boxes[:, 1] + shrink_w,
                         (boxes[:, 2] - 2 * shrink_h).clamp(min=1), (boxes[:, 3] - 2 * shrink_w).clamp(min=1)], dim=1)
    return boxes_to_mask(inner, height, width)


def stroke_holes(boxes: Tensor, height: int, width: int, generator: torch.Generator, max_strokes: int = 4,
                 max_vertices: int = 8, max_width: int = 24) -> Tensor:
    """Free-form holes inside each box: 1..max_strokes random polylines of thick line segments (capsules).

    A segment covers every pixel within half its width of it; vertices take random-angle steps of up to a third of
    the box side and stay inside the box. Vectorised over the batch and the pixels; loops only over vertices.
    """
    batch = boxes.shape[0]
    rows, cols = (c.float().unsqueeze(1) for c in _grid(height, width))  # (1, 1, H, 1), (1, 1, 1, W)
    t, l, h, w = (boxes[:, i].float().view(-1, 1) for i in range(4))
    # Per stroke: a start point, then random steps; a stroke is active only for the first n of max_strokes.
    active = torch.arange(max_strokes).view(1, -1) < _randint(1, max_strokes, (batch, 1), generator)
    y = t + torch.rand(batch, max_strokes, generator=generator) * (h - 1)
    x = l + torch.rand(batch, max_strokes, generator=generator) * (w - 1)
    radius = (torch.rand(batch, max_strokes, generator=generator) * (max_width - 4) + 4) / 2
    vertices = _randint(2, max_vertices, (batch, max_strokes), generator)
    mask = torch.zeros(batch, height, width, dtype=torch.bool)
    expand = lambda v: v.view(batch, max_strokes, 1, 1)  # noqa: E731
    for step in range(1, max_vertices):
        angle = torch.rand(batch, max_strokes, generator=generator) * 2 * math.pi
        length = torch.rand(batch, max_strokes, generator=generator) * torch.minimum(h, w) / 3
        ny = (y + length * torch.sin(angle)).clamp(t, t + h - 1)
        nx = (x + length * torch.cos(angle)).clamp(l, l + w - 1)
        # Distance of every pixel to segment (y, x) -> (ny, nx) of every stroke, (B, S, H, W).
        dy, dx, py, px = expand(ny - y), expand(nx - x), rows - expand(y), cols - expand(x)
        along = ((py * dy + px * dx) / (dy * dy + dx * dx).clamp(min=1e-6)).clamp(0, 1)
        near = (py - along * dy) ** 2 + (px - along * dx) ** 2 <= expand(radius) ** 2
        mask |= (near & expand(active & (step < vertices))).any(dim=1)
        y, x = ny, nx
    return mask.unsqueeze(1).float() * boxes_to_mask(boxes, height, width)


def sample_training_masks(batch: int, height: int, width: int, kind: str, box_size: int, max_delta: int,
                          generator: torch.Generator, margin: int = 0) -> tuple[Tensor, Tensor]:
    """Boxes (B, 4) and holes (B, 1, H, W) for one training batch; ``kind`` = rect | stroke | mixed (half each)."""
    boxes = random_boxes(batch, height, width, box_size, generator, margin)
    rect = rectangle_holes(boxes, height, width, max_delta, generator)
    if kind == "rect":
        return boxes, rect
    strokes = stroke_holes(boxes, height, width, generator)
    if kind == "stroke":
        return boxes, strokes
    if kind != "mixed":
        raise ValueError(f"unknown mask kind {kind!r} (rect, stroke or mixed)")
    use_rect = (torch.rand(batch, generator=generator) < 0.5).view(-1, 1, 1, 1)
    return boxes, torch.where(use_rect, rect, strokes)


def hole_bbox(mask: Tensor) -> Tensor:
    """Bounding box (top, left, height, width) of the hole of each (B, 1, H, W) mask; (0, 0, 0, 0) when empty."""
    hole = mask.flatten(0, 1) > 0  # (B, H, W)
    any_row, any_col = hole.any(dim=2), hole.any(dim=1)
    height, width = hole.shape[1:]
    first = lambda flags, n: torch.where(flags.any(1), flags.float().argmax(1), 0)  # noqa: E731
    top, left = first(any_row, height), first(any_col, width)
    bottom = torch.where(any_row.any(1), height - any_row.flip(1).float().argmax(1), 0)
    right = torch.where(any_col.any(1), width - any_col.flip(1).float().argmax(1), 0)
    return torch.stack([top, left, bottom - top, right - left], dim=1).long()


def crop_boxes(x: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Release ``local_patch``: the ``size`` x ``size`` crop at each box's top-left corner, (B, C, size, size)."""
    offsets = torch.arange(size, device=x.device)
    rows = (boxes[:, 0].view(-1, 1) + offsets).view(-1, 1, size, 1)  # (B, 1, size, 1)
    cols = (boxes[:, 1].view(-1, 1) + offsets).view(-1, 1, 1, size)
    batch = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1, 1)
    channels = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return x[batch, channels, rows, cols]


def load_mask(path: str | Path | BinaryIO, expected_size: tuple[int, int] | None = None, image_path: str | Path = "",
              name: str | None = None) -> Tensor:
    """A user mask image as a bool (H, W) tensor: pixels brighter than mid-grey are the hole, or, in a mask with
    varying transparency (strokes painted on a transparent layer, of any colour), the opaque pixels.

    ``path`` is a file path or an open binary file (an upload); ``name`` is what errors call it (default: the path).
    Raises ``DataError`` naming the file when it cannot be read, does not match ``expected_size`` (H, W), has no
    hole pixels or is all hole.
    """
    path = path if hasattr(path, "read") else Path(path)
    name = str(path) if name is None else name
    try:
        with Image.open(path) as image:
            alpha = np.asarray(image.getchannel("A")) if "A" in image.getbands() else None
            if alpha is None and image.mode == "P" and "transparency" in image.info:
                alpha = np.asarray(image.convert("RGBA").getchannel("A"))
            grey = np.asarray(image.convert("L"))
    except FileNotFoundError as err:
        raise DataError(f"mask file '{name}' does not exist") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read mask '{name}': {err}".splitlines()[0]) from err
    layer = alpha if alpha is not None and alpha.min() != alpha.max() else grey  # uniform alpha says nothing
    hole = torch.from_numpy(np.ascontiguousarray(layer > 127))
    if expected_size is not None and tuple(hole.shape) != tuple(expected_size):
        raise DataError(f"mask '{name}' is {hole.shape[1]}x{hole.shape[0]} but image '{image_path}' is "
                        f"{expected_size[1]}x{expected_size[0]} (width x height); they must match")
    if not bool(hole.any()):
        raise DataError(f"mask '{name}' has no hole pixels (white = hole, black = keep)")
    if bool(hole.all()):
        raise DataError(f"mask '{name}' marks the whole image as hole; nothing is left to fill from")
    return hole
