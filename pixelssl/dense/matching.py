"""Which cells of two views are positives for each other.

By coordinates (PixPro, PixContrast, PixCon-Coord), or by feature similarity (DenseCL, PixCon-Sim).
Everything is batched; nothing loops over images or pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pixelssl.dense.geometry import cell_centers, in_box, normalized_distances


def coordinate_positives(
    boxes1: Tensor, flipped1: Tensor, shape1: tuple[int, int],
    boxes2: Tensor, flipped2: Tensor, shape2: tuple[int, int],
    threshold: float = 0.7,
) -> Tensor:
    """PixPro positive mask: cells whose normalised centre distance is below ``threshold``: (B, N1, N2) bool."""
    dist = normalized_distances(boxes1, flipped1, shape1, boxes2, flipped2, shape2)
    return dist < threshold


def cells_in_other_view(
    boxes: Tensor, flipped: Tensor, shape: tuple[int, int], other_boxes: Tensor
) -> Tensor:
    """Cells of a view whose centre lies inside the other view's box, i.e. in the views' intersection: (B, N) bool."""
    return in_box(cell_centers(boxes, flipped, *shape), other_boxes)


def nearest_cell(
    boxes1: Tensor, flipped1: Tensor, shape1: tuple[int, int],
    boxes2: Tensor, flipped2: Tensor, shape2: tuple[int, int],
) -> tuple[Tensor, Tensor]:
    """For each cell of view 1, the geometrically nearest cell of view 2 (PixCon-Coord).

    Returns ``(index (B, N1) long, valid (B, N1) bool)``; valid marks cells inside view 2's box.
    """
    dist = normalized_distances(boxes1, flipped1, shape1, boxes2, flipped2, shape2)
    index = dist.argmin(dim=-1)
    valid = cells_in_other_view(boxes1, flipped1, shape1, boxes2)
    return index, valid


def feature_argmax(query: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
    """For each query cell, the key cell of highest cosine similarity (DenseCL / PixCon-Sim).

    query (B, C, N1), key (B, C, N2) -> ``(similarity (B, N1), index (B, N1))``.
    """
    sim = torch.bmm(F.normalize(query, dim=1).transpose(1, 2), F.normalize(key, dim=1))  # (B, N1, N2)
    return sim.max(dim=-1)
