"""PixPro's matcher, loss and PPM on large maps without building the N x N matrices at once.

A 56x56 level has N = 3136 cells, so each pairwise (B, N, N) block (centre distances, positive mask, cosines, PPM
similarities) holds ~10M entries per image. When such a block would exceed a memory budget, the work runs in
blocks of query rows, each small enough for the budget, and the per-row results are combined:

- the loss needs only per-image sums (cosine over positives, number of positives), which add over row blocks;
  with keys that need no gradient (PixPro's teacher keys) each query's positive keys are summed first,
  ``sum_j pos_ij cos(p_i, k_j) = p_i . sum_j pos_ij k_j``, so the loss is one pass with linear memory;
- the PPM output of a cell depends only on its own row of similarities, so row blocks are concatenated.

Otherwise, under autograd, each block is recomputed in the backward pass (``torch.utils.checkpoint``) instead of
keeping its pairwise intermediates alive, so forward and backward both stay within the budget. Results equal the
unchunked ones up to float summation order. Maps that fit the budget take the plain unchunked path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from pixelssl.dense.geometry import cell_centers, distance_scale, scaled_distances
from pixelssl.dense.propagation import pixel_propagation, propagation_rows
from pixelssl.losses import consistency_from_sums, positive_cosine_sums

# Bytes per (query, key) pair of the largest pairwise intermediate: the fp32 (dx, dy) centre differences
# (and an fp64 cosine block); every other pairwise tensor is at most this large.
PAIR_BYTES = 8


def rows_per_block(batch: int, rows: int, cols: int, budget_mib: float) -> int:
    """Query rows per block so that one (batch, block, cols) pairwise tensor fits ``budget_mib`` (0 = all rows).

    At least one row: a single row larger than the budget cannot be split further.
    """
    if budget_mib <= 0:
        return rows
    fit = int(budget_mib * 2**20) // max(1, batch * cols * PAIR_BYTES)
    return max(1, min(rows, fit))


def _blocks(rows: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


def _run_block(fn: Callable[..., tuple[Tensor, ...] | Tensor], *args: Tensor | float) -> tuple[Tensor, ...] | Tensor:
    """``fn(*args)``, recomputed in the backward pass when autograd is recording (keeps no pairwise tensors)."""
    needs_grad = torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)
    return checkpoint(fn, *args, use_reentrant=False) if needs_grad else fn(*args)


@dataclass(frozen=True)
class CellPairs:
    """Geometry of two views' maps for coordinate matching: cell centres (B, N1, 2), (B, N2, 2) and the distance
    unit (B,) (the larger cell diagonal, PixPro sec. 3.1). Positives are cells closer than ``threshold`` units."""

    centers1: Tensor
    centers2: Tensor
    scale: Tensor
    threshold: float

    @classmethod
    def of_views(cls, batch: dict[str, Tensor], shape1: tuple[int, int], shape2: tuple[int, int],
                 threshold: float) -> CellPairs:
        """View 1's (H1, W1) map against view 2's (H2, W2) map of a two-view batch."""
        return cls(cell_centers(batch["box1"], batch["flip1"], *shape1),
                   cell_centers(batch["box2"], batch["flip2"], *shape2),
                   distance_scale(batch["box1"], shape1, batch["box2"], shape2), float(threshold))

    def transposed(self) -> CellPairs:
        """The same pairs seen from view 2 (direction 2 -> 1)."""
        return CellPairs(self.centers2, self.centers1, self.scale, self.threshold)

    def positives(self, rows: slice = slice(None)) -> Tensor:
        """Positive mask of some query rows: (B, rows, N2) bool; all rows give ``coordinate_positives``."""
        return scaled_distances(self.centers1[:, rows], self.centers2, self.scale) < self.threshold


def _consistency_block(pred: Tensor, key: Tensor, centers1: Tensor, centers2: Tensor, scale: Tensor,
                       threshold: float) -> tuple[Tensor, Tensor]:
    positives = scaled_distances(centers1, centers2, scale) < threshold  # (B, rows, N2)
    return positive_cosine_sums(pred, key, positives)


def chunked_consistency(pred: Tensor, key: Tensor, pairs: CellPairs, budget_mib: float) -> tuple[Tensor, Tensor]:
    """PixPro consistency (``losses.pixpro_consistency``) of pred (B, C, N1) against key (B, C, N2) with positives
    from ``pairs``, in row blocks that fit ``budget_mib``. Returns (loss, positives per image (B,))."""
    batch, _, n1 = pred.shape
    size = rows_per_block(batch, n1, key.shape[2], budget_mib)
    if size >= n1:
        sums, counts = positive_cosine_sums(pred, key, pairs.positives())
        return consistency_from_sums(sums, counts), counts
    if not key.requires_grad:  # PixPro's keys come from the teacher: one pass, nothing to recompute
        targets, count = _positive_key_sums(key, pairs, size)
        total = (pred.to(targets.dtype) * targets).sum(dim=(1, 2))  # sum_i p_i . sum_j pos_ij k_j
        return consistency_from_sums(total, count), count
    sums, counts = zip(*(
        _run_block(_consistency_block, pred[:, :, rows], key, pairs.centers1[:, rows], pairs.centers2, pairs.scale,
                   pairs.threshold)
        for rows in _blocks(n1, size)
    ))
    total, count = torch.stack(sums).sum(0), torch.stack(counts).sum(0)
    return consistency_from_sums(total, count), count


@torch.no_grad()
def _positive_key_sums(key: Tensor, pairs: CellPairs, size: int) -> tuple[Tensor, Tensor]:
    """For each query cell the sum of its positive keys, ``sum_j pos_ij key_j`` (B, C, N1) in fp32, and the number
    of positives per image (B,), built ``size`` query rows at a time (keys need no gradient)."""
    k = key.to(torch.promote_types(key.dtype, torch.float32))  # at least fp32, as the unchunked loss
    targets, count = [], k.new_zeros(k.shape[0])
    for rows in _blocks(pairs.centers1.shape[1], size):
        pos = pairs.positives(rows).to(k.dtype)  # (B, rows, N2)
        targets.append(torch.bmm(k, pos.transpose(1, 2)))  # (B, C, rows)
        count += pos.sum(dim=(1, 2))
    return torch.cat(targets, dim=2), count


def chunked_pixel_propagation(features: Tensor, values: Tensor, gamma: float, budget_mib: float) -> Tensor:
    """``propagation.pixel_propagation`` on (B, C, H, W) maps, computed in query-row blocks that fit ``budget_mib``."""
    b, _, h, w = features.shape
    n = h * w
    size = rows_per_block(b, n, n, budget_mib)
    if size >= n:
        return pixel_propagation(features, values, gamma)
    units = F.normalize(features.flatten(2), dim=1)  # (B, C, N)
    v = F.normalize(values.flatten(2), dim=1)
    y = torch.cat([_run_block(propagation_rows, units[:, :, rows], units, v, gamma) for rows in _blocks(n, size)],
                  dim=1)  # (B, N, C)
    return F.normalize(y.transpose(1, 2), dim=1).reshape(b, -1, h, w)
