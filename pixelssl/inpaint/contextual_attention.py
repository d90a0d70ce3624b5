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

The pieces: ``tf_geometry`` (TF1's nearest resize and 'SAME' padding), ``score_fusion`` (step 4) and ``flow_image``
(the flow picture of the offsets); this module extracts the patches, runs the chunks and pastes the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from pixelssl.dense.propagation import masked_softmax, propagate
from pixelssl.inpaint.flow_image import flow_to_image
from pixelssl.inpaint.score_fusion import AttentionGrid, fused_scores
from pixelssl.inpaint.tf_geometry import resize_nearest, same_padding

DOWNSAMPLE_MODES = ("release", "stride")  # TF1 align_corners nearest resize | every rate-th row and column
DEFAULT_MEMORY_BUDGET = 1 << 22  # score-matrix elements per chunk (16 MiB in fp32: cache-friendly, no huge pages)
PATCH_NORM_EPS = 1e-4  # DeepFill v1: background patch norms are clamped below at 1e-4


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
