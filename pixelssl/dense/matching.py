"""Which cells of two views are positives for each other.

By coordinates (PixPro, PixContrast, PixCon-Coord), or by feature similarity (DenseCL, PixCon-Sim), with
semantic weights (PixCon-SR). Everything is batched; nothing loops over images or pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pixelssl.dense.geometry import cell_centers, in_box, normalized_distances


def _fp32(t: Tensor) -> Tensor:
    """Half-precision inputs (autocast) are upcast; fp32 / fp64 pass through."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


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


def intersection_grid_cells(boxes: Tensor, flipped: Tensor, shape: tuple[int, int], other_boxes: Tensor) -> Tensor:
    """Cells of a view inside the views' intersection by the PixCon release's rule: (B, H*W) bool.

    The release (``_clip_coords`` and ``COCOCoord``) expresses the intersection box in the view's own [0, 1]
    coordinates (mirrored when the view is flipped), scales it by the grid side and truncates:
    cell (i, j) is inside when ``floor(y0 * H) <= i < floor(y1 * H)`` and ``floor(x0 * W) <= j < floor(x1 * W)``.
    It differs from ``cells_in_other_view`` (cell centre inside the box) on border cells. Computed from our
    normalised boxes (the release uses exclusive pixel ends: under one pixel per crop edge); views that do not
    overlap get no cells (the release's negative slice ends would wrap around).
    """
    height, width = shape
    boxes, other = boxes.float(), other_boxes.float()
    lo = torch.maximum(boxes[:, :2], other[:, :2])  # (B, 2) intersection corners (x, y) in image coordinates
    hi = torch.minimum(boxes[:, 2:], other[:, 2:])
    span = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1e-12)
    rel_lo, rel_hi = (lo - boxes[:, :2]) / span, (hi - boxes[:, :2]) / span  # in the view's own coordinates
    flip = flipped.to(torch.bool)
    x_lo = torch.where(flip, 1.0 - rel_hi[:, 0], rel_lo[:, 0])
    x_hi = torch.where(flip, 1.0 - rel_lo[:, 0], rel_hi[:, 0])
    overlap = (hi > lo).all(dim=1)  # (B,)
    col0, col1 = (x_lo * width).floor(), (x_hi * width).floor()
    row0, row1 = (rel_lo[:, 1] * height).floor(), (rel_hi[:, 1] * height).floor()
    cols = torch.arange(width, device=boxes.device, dtype=boxes.dtype)
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype)
    in_cols = (cols[None] >= col0[:, None]) & (cols[None] < col1[:, None])  # (B, W)
    in_rows = (rows[None] >= row0[:, None]) & (rows[None] < row1[:, None])  # (B, H)
    inside = in_rows[:, :, None] & in_cols[:, None, :] & overlap[:, None, None]
    return inside.reshape(boxes.shape[0], height * width)


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

    query (B, C, N1), key (B, C, N2) -> ``(similarity (B, N1), index (B, N1))``. Computed in fp32 even under
    autocast: bf16 cosines would tie and move the argmax.
    """
    with torch.autocast(query.device.type, enabled=False):
        sim = torch.bmm(F.normalize(_fp32(query), dim=1).transpose(1, 2), F.normalize(_fp32(key), dim=1))  # (B, N1, N2)
    return sim.max(dim=-1)


def gather_cells(features: Tensor, index: Tensor) -> Tensor:
    """The cells ``index`` (B, N1) of a flattened map (B, C, N2): (B, C, N1), e.g. each query cell's matched key."""
    return torch.gather(features, 2, index[:, None, :].expand(-1, features.shape[1], -1))


def semantic_weights(similarity: Tensor, in_box: Tensor, power: float = 2.0, spatial_only: bool = False) -> Tensor:
    """PixCon-SR weight of each query cell (authors' release, ``calc_dense_loss``): (B, N) in [0, 1].

    ``similarity`` (B, N) is each query cell's matching similarity ``s_i = max_j cos(b_q_i, b_k_j)`` and
    ``in_box`` (B, N) marks query cells inside the views' intersection. Per image
    ``w_i = ((s_i - min_all s) / (max_out-of-box s - min_all s)) ** p`` for out-of-box cells and ``w_i = 1``
    in-box. Degenerate images, where every cell is in-box or the out-of-box maximum equals the minimum (all
    similarities equal), get weight 1 everywhere: no semantic evidence, so the loss falls back to PixCon-Sim
    (the release would divide 0 by 0 there). ``spatial_only`` gives the paper's "SR (Spa.)" ablation:
    1 in-box, 0 outside.
    """
    in_box = in_box.to(torch.bool)
    if spatial_only:
        return in_box.to(_fp32(similarity).dtype)
    s = _fp32(similarity)
    low = s.min(dim=1, keepdim=True).values  # (B, 1), over all queries
    high = s.masked_fill(in_box, float("-inf")).max(dim=1, keepdim=True).values  # over out-of-box queries
    span = high - low  # -inf when every cell is in-box, 0 when all similarities are equal
    informative = span > 0
    scaled = ((s - low) / torch.where(informative, span, torch.ones_like(span))).clamp(0.0, 1.0)
    weights = torch.where(informative & ~in_box, scaled, torch.ones_like(s))
    return weights**power
