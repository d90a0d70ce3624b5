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
