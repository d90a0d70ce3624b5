"""Feature-map cells in source-image coordinates (the geometry contract of docs/design.md).

A view's box is ``(x0, y0, x1, y1)`` normalised per axis to [0, 1] as PixPro's release does
(inclusive pixel indices divided by size - 1), plus a flip flag. A flipped view's cells run right
to left: its bin width is negative, exactly as when the release swaps x0 and x1.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _oriented_x(boxes: Tensor, flipped: Tensor) -> tuple[Tensor, Tensor]:
    """Left edge and signed width of each view, mirrored for flipped views."""
    x0, x1 = boxes[:, 0], boxes[:, 2]
    flipped = flipped.to(torch.bool)
    start = torch.where(flipped, x1, x0)
    end = torch.where(flipped, x0, x1)
    return start, end - start


def cell_centers(boxes: Tensor, flipped: Tensor, height: int, width: int) -> Tensor:
    """Centres of an (height, width) feature map's cells in image coordinates: (B, H*W, 2) as (x, y).

    Cell (i, j) of a view with box (x0, y0, x1, y1) sits at
    ``x = x0 + (j + 0.5) * (x1 - x0) / W`` (x0 and x1 swapped when flipped), ``y = y0 + (i + 0.5) * (y1 - y0) / H``.
    """
    boxes = boxes.float()
    start_x, span_x = _oriented_x(boxes, flipped)
    y0, span_y = boxes[:, 1], boxes[:, 3] - boxes[:, 1]
    j = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    i = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = start_x[:, None] + j[None, :] * (span_x / width)[:, None]  # (B, W)
    ys = y0[:, None] + i[None, :] * (span_y / height)[:, None]  # (B, H)
    grid_x = xs[:, None, :].expand(-1, height, -1)
    grid_y = ys[:, :, None].expand(-1, -1, width)
    return torch.stack((grid_x, grid_y), dim=-1).reshape(boxes.shape[0], height * width, 2)


def bin_diagonal(boxes: Tensor, height: int, width: int) -> Tensor:
    """Diagonal length of one feature-map cell of each view, in normalised image units: (B,)."""
    boxes = boxes.float()
    bin_w = (boxes[:, 2] - boxes[:, 0]) / width
    bin_h = (boxes[:, 3] - boxes[:, 1]) / height
    return torch.sqrt(bin_w**2 + bin_h**2)


def normalized_distances(
    boxes1: Tensor, flipped1: Tensor, shape1: tuple[int, int],
    boxes2: Tensor, flipped2: Tensor, shape2: tuple[int, int],
) -> Tensor:
    """Distance between every cell centre of view 1 and of view 2, divided by the larger of the two
    views' cell diagonals (PixPro sec. 3.1): (B, N1, N2)."""
    c1 = cell_centers(boxes1, flipped1, *shape1)
    c2 = cell_centers(boxes2, flipped2, *shape2)
    return scaled_distances(c1, c2, distance_scale(boxes1, shape1, boxes2, shape2))


def distance_scale(boxes1: Tensor, shape1: tuple[int, int], boxes2: Tensor, shape2: tuple[int, int]) -> Tensor:
    """The larger of the two views' cell diagonals, PixPro's distance unit: (B,)."""
    return torch.maximum(bin_diagonal(boxes1, *shape1), bin_diagonal(boxes2, *shape2))


def scaled_distances(centers1: Tensor, centers2: Tensor, scale: Tensor) -> Tensor:
    """Distance between centres (B, N1, 2) and (B, N2, 2) divided by ``scale`` (B,): (B, N1, N2).

    Any row subset of ``centers1`` gives the same rows of the full result (what the chunked matcher relies on).
    """
    # Explicit differences rather than torch.cdist, whose matrix-product shortcut loses precision.
    diff = centers1[:, :, None, :] - centers2[:, None, :, :]
    dist = diff.pow(2).sum(-1).sqrt()
    return dist / scale[:, None, None]


def in_box(points: Tensor, boxes: Tensor) -> Tensor:
    """Whether each point (B, N, 2) lies inside its image's box (B, 4), edges included: (B, N) bool."""
    boxes = boxes.float()
    x, y = points[..., 0], points[..., 1]
    return (
        (x >= boxes[:, None, 0]) & (x <= boxes[:, None, 2]) & (y >= boxes[:, None, 1]) & (y <= boxes[:, None, 3])
    )
