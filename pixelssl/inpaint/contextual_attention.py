"""Contextual attention (Yu et al., CVPR 2018, DeepFill v1): hole features rebuilt from matching background patches.

Follows the authors' v1.0.0 release (``inpaint_ops.contextual_attention``) step by step, batched over samples and built on
``dense.propagation``'s similarity -> softmax -> propagate core:

1. foreground f, background b and the hole mask are nearest-downsampled by ``rate`` with TF1's
   ``resize_nearest_neighbor(align_corners=True)`` (``resize_nearest``: 64 -> 32 reads rows 0, 2, ..., 30, 33, ..., 63;
   ``downsample="stride"`` takes every ``rate``-th row and column instead); background patches are
   ``ksize`` x ``ksize`` at ``stride`` from the small b; raw patches are 2*rate x 2*rate at stride rate*stride
   from the full-resolution b (TensorFlow 'SAME' zero padding everywhere);
2. a background patch is valid when the mask mean over it is 0;
3. scores = foreground patch . background patch / max(|background patch|, 1e-4): one batched matmul of unfolded
   patches (``similarity_matrix`` of the shared core), the same numbers as the release's convolution of f with
   the normalised patches as kernels;
4. fusion ("attention propagation"): the release convolves the flattened (query, key) score matrix with a
   ``fuse_k`` identity kernel, i.e. adds ``S[p + d, q + d]`` for ``|d| <= fuse_k // 2``, once in row-major order
   and once after transposing both spatial grids (column-major order); neighbours wrap from the end of one
   row (column) to the start of the next exactly as in the release. Done as slice additions of contiguous row
   blocks: no transposed copies of the score matrix, no convolution over it;
5. ``masked_softmax(scores, valid, scale=10)``;
6. the release's transposed convolution with the raw patches as kernels (stride ``rate``), divided by 4. A 2r x 2r
   raw patch at stride r is 2 x 2 blocks of an r x r block grid, and output block (I, J) receives quarter (a, b) of
   the patch mixed at query (I - a, J - b); so the transposed convolution equals ``propagate(W, blocks)`` with the
   attention weights summed over those four offsets (``fold_block_offsets``): the same sums (up to rounding
   order) with 4x fewer multiply-adds than pasting whole patches, and no col2im scatter.

Patches are taken from channels-last views, so every patch matrix is one cheap copy with contiguous channels.
The score matrix is computed in chunks whenever B x (queries) x (keys) would exceed ``memory_budget``
elements: whole samples are grouped while they fit, larger samples are split into blocks of query rows, each of
which recomputes the few score rows its fusion neighbours need (its "halo"), so chunked and unchunked results
are identical. Small chunks also keep the working set in cache. With gradients on and a large problem, each
chunk is checkpointed, so training memory is bounded too.

Deviations from the release, on purpose: each sample has its own mask (the release shares one across the batch);
odd sizes use ``ceil(size / rate)`` grids (the release only runs on multiples of 8); the flow picture is
normalised per image (the release uses a running maximum over the batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from pixelssl.dense.propagation import masked_softmax, propagate, similarity_matrix

DOWNSAMPLE_MODES = ("release", "stride")  # TF1 align_corners nearest resize | every rate-th row and column
DEFAULT_MEMORY_BUDGET = 1 << 22  # score-matrix elements per chunk (16 MiB in fp32: cache-friendly, no huge pages)
PATCH_NORM_EPS = 1e-4  # DeepFill v1: background patch norms are clamped below at 1e-4


def align_corners_indices(in_size: int, out_size: int) -> np.ndarray:
    """The input index each output index reads in TF1's nearest resize with ``align_corners=True``.

    ``min(roundf(i * ((in - 1) / (out - 1))), in - 1)`` computed in float32 with halves rounded away from zero, as
    TF1's ``resize_nearest_neighbor`` kernel does (``roundf``, not Python's round-half-to-even): 64 -> 32 reads
    0, 2, ..., 30, 33, ..., 63, and 3 -> 5 reads 0, 1, 1, 2, 2. Upsampling n -> 2n reads ``i // 2``, i.e. the same as
    PyTorch's nearest x2.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive (got {in_size} -> {out_size})")
    if out_size > 1:  # DeepFill v1 release: neuralgym resize, align_corners=True
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    x = np.arange(out_size, dtype=np.float32) * scale  # float32 product, as the kernel's ``y * height_scale``
    whole = np.floor(x)
    index = whole.astype(np.int64) + (x - whole >= 0.5)  # roundf: halves away from zero (x >= 0)
    return np.minimum(index, in_size - 1)


def resize_nearest(x: Tensor, size: tuple[int, int], dims: tuple[int, int] = (-2, -1)) -> Tensor:
    """TF1 ``resize_nearest_neighbor(x, size, align_corners=True)`` of the two spatial ``dims`` of x (any layout).

    The release resizes with it everywhere (neuralgym's ``resize``): foreground, background and mask in contextual
    attention, the generator's mask (``resize_mask_like``) and the flow picture.
    """
    for dim, n in zip(dims, size):
        if x.shape[dim] != n:
            x = x.index_select(dim, torch.from_numpy(align_corners_indices(x.shape[dim], int(n))).to(x.device))
    return x


def downsample_by_rate(x: Tensor, rate: int, mode: str, dims: tuple[int, int] = (-2, -1)) -> Tensor:
    """x downsampled by ``rate`` along ``dims`` to ``ceil(size / rate)``: the release's resize or every rate-th row."""
    if mode == "release":  # DeepFill v1 release: inpaint_ops.contextual_attention, resize(scale=1/rate), nearest
        return resize_nearest(x, tuple(-(-x.shape[d] // rate) for d in dims), dims)
    if mode == "stride":
        index = [slice(None)] * x.dim()
        for d in dims:
            index[d] = slice(None, None, rate)
        return x[tuple(index)]
    raise ValueError(f"unknown downsample mode {mode!r} ({' | '.join(DOWNSAMPLE_MODES)})")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow 'SAME' geometry along one axis: (output size, padding before, padding after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _unfold_same(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Strided view of every 'SAME'-padded patch of channels-last x (B, H, W, C): (B, oh, ow, C, kernel, kernel)."""
    _, top, bottom = same_padding(x.shape[1], kernel, stride)
    _, left, right = same_padding(x.shape[2], kernel, stride)
    return F.pad(x, (0, 0, left, right, top, bottom)).unfold(1, kernel, stride).unfold(2, kernel, stride)


def extract_patches(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Patches of channels-last x (B, H, W, C) as rows (B, L, kernel*kernel*C): row-major, values in (ky, kx, c) order."""
    p = _unfold_same(x, kernel, stride)
    return p.permute(0, 1, 2, 4, 5, 3).reshape(x.shape[0], p.shape[1] * p.shape[2], -1)


def extract_raw_blocks(x: Tensor, rate: int, stride: int) -> tuple[Tensor, int, int]:
    """The 'SAME'-padded background x (B, H, W, C) cut into non-overlapping rate x rate blocks: (B, Hb*Wb, r*r*C).

    The release's raw patch of key (k, l) (2r x 2r at stride r*stride) is exactly the 2 x 2 blocks
    (stride*k + a, stride*l + b), a, b in {0, 1}, of this grid. Returns the blocks and the grid size (Hb, Wb).
    """
    (bh, top, bottom), (bw, left, right) = (same_padding(n, 2 * rate, rate * stride) for n in x.shape[1:3])
    hb, wb = stride * (bh - 1) + 2, stride * (bw - 1) + 2  # (padded size) / rate
    x = F.pad(x, (0, 0, left, right, top, bottom))  # (B, r*Hb, r*Wb, C)
    blocks = x.view(x.shape[0], hb, rate, wb, rate, x.shape[3]).transpose(2, 3)
    return blocks.reshape(x.shape[0], hb * wb, -1), hb, wb


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


def fold_block_offsets(weights: Tensor, rows: int, grid: AttentionGrid, stride: int, hb: int, wb: int) -> Tensor:
    """Attention weights (B, rows*fw, L) summed over the four block offsets of the release's transposed convolution.

    Output block (I, J) receives quarter (a, b) of the patch mixed at query (I - a, J - b), and quarter (a, b) of key
    (k, l) is raw block (stride*k + a, stride*l + b); so the transposed convolution equals ``W @ blocks`` with
    ``W[(I, J), (K, L)] = sum_ab weights[(I - a, J - b), ((K - a) / stride, (L - b) / stride)]``. Returns W as
    (B, (rows + 1) * (fw + 1), Hb * Wb): one product with r x r blocks instead of four with 2r x 2r patches.
    """
    batch = weights.shape[0]
    w = weights.view(batch, rows, grid.fw, grid.bh, grid.bw)
    folded = weights.new_zeros(batch, rows + 1, grid.fw + 1, hb, wb)
    for a, b in ((0, 0), (0, 1), (1, 0), (1, 1)):
        folded[:, a:a + rows, b:b + grid.fw, a:a + stride * (grid.bh - 1) + 1:stride,
               b:b + stride * (grid.bw - 1) + 1:stride].add_(w)
    return folded.view(batch, (rows + 1) * (grid.fw + 1), hb * wb)


def _attend_chunk(queries: Tensor, keys: Tensor, valid: Tensor, blocks: Tensor, rows: np.ndarray,
                  grid: AttentionGrid, fuse_k: int, softmax_scale: float, stride: int, hb: int,
                  wb: int) -> tuple[Tensor, Tensor]:
    """Pasted background for the query rows ``rows`` (and the row below them) and each query's argmax key."""
    weights = masked_softmax(fused_scores(queries, keys, rows, grid, fuse_k), valid.unsqueeze(1), softmax_scale)
    folded = fold_block_offsets(weights, len(rows) // grid.fw, grid, stride, hb, wb)
    return propagate(folded, blocks), weights.argmax(dim=-1)  # (B, (n_rows + 1) * (fw + 1), r*r*C), (B, n)


def plan_chunks(batch: int, grid: AttentionGrid, budget: int) -> list[tuple[int, int, int, int]]:
    """(first sample, end sample, first query row, end query row) blocks whose score matrix has <= budget elements.

    Whole samples are grouped while they fit (no halo to recompute); a larger sample is split into blocks of
    foreground rows (at least one row).
    """
    per_sample = grid.queries * grid.keys
    if per_sample <= budget:
        group = max(1, min(batch, budget // per_sample))
        return [(b, min(b + group, batch), 0, grid.fh) for b in range(0, batch, group)]
    rows = max(1, budget // (grid.fw * grid.keys))
    return [(b, b + 1, r, min(r + rows, grid.fh)) for b in range(batch) for r in range(0, grid.fh, rows)]


@dataclass
class PreparedPatches:
    """Steps 1-3 of the layer's inputs: downsampled grids, foreground and unit background patches, validity."""

    grid: AttentionGrid
    queries: Tensor  # (B, P, k*k*C) foreground patches, row-major
    keys: Tensor  # (B, L, k*k*C) background patches / max(norm, 1e-4), row-major
    valid: Tensor  # (B, L) 1 where the patch lies entirely outside the hole
    background: Tensor  # (B, H, W, C) full-resolution background, channels-last view


def prepare_patches(f: Tensor, b: Tensor, mask: Tensor | None, ksize: int, stride: int, rate: int,
                    fuse_k: int, downsample: str = "release") -> PreparedPatches:
    """Check the inputs and extract the patches the release extracts (see the module docstring, steps 1-3)."""
    if f.shape != b.shape:
        raise ValueError(f"foreground {tuple(f.shape)} and background {tuple(b.shape)} must have the same shape")
    if fuse_k < 1 or fuse_k % 2 == 0:
        raise ValueError(f"fuse_k must be a positive odd number (got {fuse_k})")
    batch, _, height, width = f.shape
    if mask is None:
        mask = f.new_zeros(1, 1, height, width)
    if mask.shape[-2:] != f.shape[-2:] or mask.shape[1] != 1:
        raise ValueError(f"mask {tuple(mask.shape)} must be (B or 1, 1, {height}, {width})")
    # Channels-last views: patches become rows with contiguous channels, which makes every copy below cheap.
    f_cl, b_cl, m_cl = (x.permute(0, 2, 3, 1) for x in (f, b, mask.to(f.dtype)))
    small_f, small_b, small_m = (downsample_by_rate(x, rate, downsample, dims=(1, 2)) for x in (f_cl, b_cl, m_cl))
    grid = AttentionGrid(small_f.shape[1], small_f.shape[2], same_padding(small_b.shape[1], ksize, stride)[0],
                         same_padding(small_b.shape[2], ksize, stride)[0])
    if fuse_k // 2 > min(grid.bh, grid.bw):
        raise ValueError(f"fuse_k={fuse_k} is too large for a {grid.bh}x{grid.bw} background grid")
    queries = extract_patches(small_f, ksize, 1)
    keys = queries if (f is b and stride == 1) else extract_patches(small_b, ksize, stride)
    keys = F.normalize(keys, dim=2, eps=PATCH_NORM_EPS)  # DeepFill v1: w / max(|w|, 1e-4)
    valid = (extract_patches(small_m, ksize, stride).mean(dim=2) == 0).to(f.dtype).expand(batch, -1)
    return PreparedPatches(grid, queries, keys, valid, b_cl)


def attention_weights(f: Tensor, b: Tensor, mask: Tensor | None = None, ksize: int = 3, stride: int = 1,
                      rate: int = 2, fuse_k: int = 3, softmax_scale: float = 10.0,
                      downsample: str = "release") -> Tensor:
    """The full attention matrix (B, queries, keys), both in row-major order, for inspection of small inputs."""
    p = prepare_patches(f, b, mask, ksize, stride, rate, fuse_k, downsample)
    scores = fused_scores(p.queries, p.keys, np.arange(p.grid.queries), p.grid, fuse_k)
    return masked_softmax(scores, p.valid.unsqueeze(1), softmax_scale)


def contextual_attention(
    f: Tensor, b: Tensor, mask: Tensor | None = None, ksize: int = 3, stride: int = 1, rate: int = 2,
    fuse_k: int = 3, softmax_scale: float = 10.0, memory_budget: int = DEFAULT_MEMORY_BUDGET,
    downsample: str = "release",
) -> tuple[Tensor, Tensor]:
    """DeepFill v1 contextual attention on (B, C, H, W) maps; mask (B or 1, 1, H, W), 1 = hole (None = no hole).

    Returns the reconstructed foreground (B, C, H, W), channels-last in memory, and the attention offsets
    (B, 2, ceil(H/rate), ceil(W/rate)): (row, column) of each location's argmax background patch minus its own
    position, in downsampled cells. ``fuse_k`` = 1 turns the fusion off; ``downsample`` is "release" (TF1's
    align-corners nearest resize) or "stride" (every ``rate``-th row and column).
    """
    p = prepare_patches(f, b, mask, ksize, stride, rate, fuse_k, downsample)
    grid, queries, keys, valid = p.grid, p.queries, p.keys, p.valid
    batch, channels, height, width = f.shape
    blocks, hb, wb = extract_raw_blocks(p.background, rate, stride)  # (B, Hb*Wb, r*r*C)

    # DeepFill v1: transposed convolution of the attention map with the raw patches (stride rate), / 4, computed
    # as (weights folded over the four block offsets) @ (r x r blocks), block rows added onto a padded canvas.
    canvas = f.new_zeros(batch, grid.fh + 1, rate, grid.fw + 1, rate, channels)
    argmax = f.new_empty(batch, grid.queries, dtype=torch.long)
    chunks = plan_chunks(batch, grid, memory_budget)
    save_memory = len(chunks) > 1 and torch.is_grad_enabled() and batch * grid.queries * grid.keys > 16 * memory_budget
    for b0, b1, r0, r1 in chunks:
        rows = np.arange(r0 * grid.fw, r1 * grid.fw)
        args = (queries[b0:b1], keys[b0:b1], valid[b0:b1], blocks[b0:b1], rows, grid, fuse_k, softmax_scale, stride,
                hb, wb)
        pasted, best = checkpoint(_attend_chunk, *args, use_reentrant=False) if save_memory else _attend_chunk(*args)
        argmax[b0:b1, r0 * grid.fw:r1 * grid.fw] = best
        pasted = pasted.view(b1 - b0, r1 - r0 + 1, grid.fw + 1, rate, rate, channels).transpose(2, 3)
        canvas[b0:b1, r0:r1 + 1].add_(pasted)
    _, top, _ = same_padding(height, 2 * rate, rate)
    _, left, _ = same_padding(width, 2 * rate, rate)
    canvas = canvas.view(batch, (grid.fh + 1) * rate, (grid.fw + 1) * rate, channels)
    out = (canvas[:, top:top + height, left:left + width] / 4.0).permute(0, 3, 1, 2)

    index = argmax.view(batch, grid.fh, grid.fw)  # row-major key index
    rows_ = torch.arange(grid.fh, device=f.device).view(1, -1, 1)
    cols_ = torch.arange(grid.fw, device=f.device).view(1, 1, -1)
    offsets = torch.stack([index // grid.bw - rows_, index % grid.bw - cols_], dim=1)
    return out, offsets


# ----------------------------------------------------------------------------------------- flow visualisation
def color_wheel() -> Tensor:
    """The Middlebury optical-flow colour wheel (Baker et al. 2011), 55 RGB colours in [0, 255] (float)."""
    segments = ((15, (255, 0, 0), (0, 1, 0)), (6, (255, 255, 0), (-1, 0, 0)), (4, (0, 255, 0), (0, 0, 1)),
                (11, (0, 255, 255), (0, -1, 0)), (13, (0, 0, 255), (1, 0, 0)), (6, (255, 0, 255), (0, 0, -1)))
    parts = []
    for n, start, direction in segments:  # each segment ramps one channel up or down by floor(255 * i / n)
        ramp = torch.floor(255 * torch.arange(n, dtype=torch.float64) / n)
        parts.append(torch.tensor(start, dtype=torch.float64) + ramp[:, None] * torch.tensor(direction))
    return torch.cat(parts).float()


def flow_to_image(offsets: Tensor) -> Tensor:
    """Render (B, 2, H, W) offsets (rows, columns) with the optical-flow colour wheel: (B, 3, H, W) in [0, 1].

    Same colouring as the release's ``compute_color``: hue from the direction, saturation from the length
    relative to the image's longest offset; an offset of 0 is white.
    """
    flow = offsets.double()
    u, v = flow[:, 0], flow[:, 1]
    radius = torch.sqrt(u * u + v * v)
    max_radius = radius.flatten(1).amax(dim=1).view(-1, 1, 1) + torch.finfo(torch.float64).eps
    u, v, radius = u / max_radius, v / max_radius, radius / max_radius
    wheel = color_wheel().double().to(offsets.device) / 255
    ncols = wheel.shape[0]
    fk = (torch.atan2(-v, -u) / math.pi + 1) / 2 * (ncols - 1)  # 0-based position on the wheel
    k0 = fk.floor().long()
    k1 = (k0 + 1) % ncols
    frac = (fk - k0).unsqueeze(-1)
    colour = (1 - frac) * wheel[k0] + frac * wheel[k1]  # (B, H, W, 3)
    inside = (radius <= 1).unsqueeze(-1)
    colour = torch.where(inside, 1 - radius.unsqueeze(-1) * (1 - colour), colour * 0.75)
    return (torch.floor(255 * colour) / 255).permute(0, 3, 1, 2).float()


class ContextualAttention(nn.Module):
    """The contextual attention layer (no parameters); ``forward(f, b, mask)`` -> (output, flow picture or None).

    Example::

        ca = ContextualAttention(rate=2)
        y, flow = ca(features, features, hole_mask)  # flow: (B, 3, H, W) in [0, 1]
    """

    def __init__(self, ksize: int = 3, stride: int = 1, rate: int = 2, fuse_k: int = 3, softmax_scale: float = 10.0,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, downsample: str = "release") -> None:
        super().__init__()
        if downsample not in DOWNSAMPLE_MODES:
            raise ValueError(f"unknown downsample mode {downsample!r} ({' | '.join(DOWNSAMPLE_MODES)})")
        self.ksize, self.stride, self.rate = ksize, stride, rate
        self.fuse_k, self.softmax_scale, self.memory_budget = fuse_k, softmax_scale, memory_budget
        self.downsample = downsample

    def forward(self, f: Tensor, b: Tensor, mask: Tensor | None = None,
                return_flow: bool = True) -> tuple[Tensor, Tensor | None]:
        out, offsets = contextual_attention(f, b, mask, self.ksize, self.stride, self.rate, self.fuse_k,
                                            self.softmax_scale, self.memory_budget, self.downsample)
        if not return_flow:
            return out, None
        with torch.no_grad():  # DeepFill v1 release: inpaint_ops.contextual_attention, resize(flow, scale=rate), nearest
            flow = resize_nearest(flow_to_image(offsets), f.shape[-2:])
        return out, flow

    def extra_repr(self) -> str:
        return (f"ksize={self.ksize}, stride={self.stride}, rate={self.rate}, fuse_k={self.fuse_k}, "
                f"softmax_scale={self.softmax_scale}, memory_budget={self.memory_budget}, downsample={self.downsample}")
