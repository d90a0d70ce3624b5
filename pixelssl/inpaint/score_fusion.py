"""The attention scores fused as the release fuses them (DeepFill v1's attention propagation, step 4 of
``contextual_attention``), for any block of query rows: slice additions of row blocks, only the halo recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pixelssl.dense.propagation import similarity_matrix


def row_major_shift(index: np.ndarray, d: int, count: int) -> np.ndarray:
    """Row-major index of the cell ``d`` places after ``index`` in row-major order; -1 past the ends."""
    moved = index + d
    return np.where((moved >= 0) & (moved < count), moved, -1)


def column_major_shift(index: np.ndarray, d: int, height: int, width: int) -> np.ndarray:
    """Row-major index of the cell ``d`` places after ``index`` in column-major order; -1 past the ends."""
    col = (index % width) * height + index // width + d
    return np.where((col >= 0) & (col < height * width), (col % height) * width + col // height, -1)


def add_key_shift_flat(out: Tensor, src: Tensor, d: int) -> None:
    """``out[..., q] += src[..., q + d]`` along the flattened key axis (zero past the ends)."""
    if d > 0:
        out[..., :-d].add_(src[..., d:])
    elif d < 0:
        out[..., -d:].add_(src[..., :d])


def add_key_shift_wrapped(out: Tensor, src: Tensor, d: int, outer: int, inner: int) -> None:
    """The same shift along the *outer* axis of keys stored as (outer, inner), carrying into the next inner index.

    For row-major keys (outer = rows) this is the release's column-major order: the neighbour ``d`` of key (k, l)
    is (k + d, l), wrapping to (k + d - outer, l + 1) or (k + d + outer, l - 1). Needs ``|d| <= outer``.
    """
    o = out.unflatten(-1, (outer, inner))
    s = src.unflatten(-1, (outer, inner))
    e = abs(d)
    if d > 0:
        o[..., : outer - e, :].add_(s[..., e:, :])
        o[..., outer - e :, : inner - 1].add_(s[..., :e, 1:])
    elif d < 0:
        o[..., e:, :].add_(s[..., : outer - e, :])
        o[..., :e, 1:].add_(s[..., outer - e :, : inner - 1])


def runs(rows: np.ndarray, wanted: np.ndarray) -> list[tuple[int, int, int]]:
    """Where each wanted index sits in the sorted ``rows``, as (target start, source start, length) runs of
    consecutive targets reading consecutive sources; wanted entries of -1 (outside the grid) are skipped."""
    target = np.flatnonzero(wanted >= 0)
    if target.size == 0:
        return []
    source = np.searchsorted(rows, wanted[target])
    breaks = np.flatnonzero((np.diff(target) != 1) | (np.diff(source) != 1)) + 1
    starts = [0, *breaks.tolist()]
    ends = [*starts[1:], target.size]
    return [(int(target[s]), int(source[s]), e - s) for s, e in zip(starts, ends)]


def gather_rows(x: Tensor, rows: np.ndarray, wanted: np.ndarray) -> Tensor:
    """``x[:, position of each wanted index in rows]`` as one copy of contiguous row blocks."""
    return torch.cat([x.narrow(1, s, n) for _, s, n in runs(rows, wanted)], dim=1)


def shifted_sum(scores: Tensor, rows: np.ndarray, targets: np.ndarray, shifts: list[int],
                shift_index: Callable[[np.ndarray, int], np.ndarray],
                add_key_shift: Callable[[Tensor, Tensor, int], None]) -> Tensor:
    """One fusion pass (DeepFill v1: attention propagation): ``out[t, q] = sum_d scores[t + d, q + d]``.

    ``scores`` (B, len(rows), L) holds the score rows of the sorted query indices ``rows``; ``shift_index`` and
    ``add_key_shift`` define "+ d" for queries and keys; neighbours outside the grid count as zero.
    Returns (B, len(targets), L). Rows are copied and added in contiguous runs (no gathers).
    """
    out = gather_rows(scores, rows, targets)
    for d in shifts:
        for t, s, n in runs(rows, shift_index(targets, d)):
            add_key_shift(out.narrow(1, t, n), scores.narrow(1, s, n), d)
    return out


@dataclass(frozen=True)
class AttentionGrid:
    """Sizes of the downsampled foreground grid (queries) and background grid (keys)."""

    fh: int
    fw: int
    bh: int
    bw: int

    @property
    def queries(self) -> int:
        return self.fh * self.fw

    @property
    def keys(self) -> int:
        return self.bh * self.bw


def fused_scores(queries: Tensor, keys: Tensor, rows: np.ndarray, grid: AttentionGrid, fuse_k: int) -> Tensor:
    """Scores of the query cells ``rows`` (row-major indices) against every key, fused as the release does.

    queries (B, P, D) foreground patches, keys (B, L, D) unit background patches (both row-major) -> (B, n, L).
    The second fusion pass reads fused rows of the queries' column-major neighbours, the first pass reads raw
    score rows of those rows' row-major neighbours: only that halo is recomputed beyond ``rows``.
    """
    shifts = [d for d in range(-(fuse_k // 2), fuse_k // 2 + 1) if d != 0]
    every_row = np.arange(grid.queries)
    if not shifts:
        return similarity_matrix(gather_rows(queries, every_row, rows).transpose(1, 2), keys.transpose(1, 2))
    by_column = lambda index, d: column_major_shift(index, d, grid.fh, grid.fw)  # noqa: E731
    by_row = lambda index, d: row_major_shift(index, d, grid.queries)  # noqa: E731
    fused_rows = np.unique(np.concatenate([rows, *(by_column(rows, d) for d in shifts)]))
    fused_rows = fused_rows[fused_rows >= 0]
    score_rows = np.unique(np.concatenate([fused_rows, *(by_row(fused_rows, d) for d in shifts)]))
    score_rows = score_rows[score_rows >= 0]
    scores = similarity_matrix(gather_rows(queries, every_row, score_rows).transpose(1, 2),
                               keys.transpose(1, 2))  # (B, n', L)
    # DeepFill v1: identity-kernel fusion in row-major order, then with both spatial grids transposed.
    scores = shifted_sum(scores, score_rows, fused_rows, shifts, by_row, add_key_shift_flat)
    return shifted_sum(scores, fused_rows, rows, shifts, by_column,
                       lambda o, s, d: add_key_shift_wrapped(o, s, d, grid.bh, grid.bw))
