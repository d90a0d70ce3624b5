"""A naive per-sample contextual attention, written the way the DeepFill v1 release does it.

One sample at a time: downsampling by TF1's align-corners nearest resize written as a per-index formula (or every
``rate``-th row with ``downsample="stride"``), patches by unfold, scores by ``conv2d`` with the normalised patches as
kernels, fusion by ``conv2d`` with an identity kernel over the (queries, keys) score image (twice, the second time
with both grids transposed), masked softmax, and reconstruction by ``conv_transpose2d`` with the raw patches as
kernels.
The tests check ``pixelssl.inpaint.contextual_attention`` against it; ``benchmarks/inpaint_speed.py`` times it
as the baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _same(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF 'SAME': output size, pad before, pad after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _patches_as_kernels(x: Tensor, kernel: int, stride: int) -> Tensor:
    """(1, C, H, W) -> (L, C, kernel, kernel): every 'SAME'-padded patch, row-major, as a conv kernel."""
    _, top, bottom = _same(x.shape[-2], kernel, stride)
    _, left, right = _same(x.shape[-1], kernel, stride)
    cols = F.unfold(F.pad(x, (left, right, top, bottom)), kernel, stride=stride)  # (1, C*k*k, L)
    return cols[0].t().reshape(-1, x.shape[1], kernel, kernel)


def _downsample(x: Tensor, rate: int, downsample: str) -> Tensor:
    """(1, C, H, W) -> (1, C, ceil(H / rate), ceil(W / rate)); release: row i reads round(i * (H - 1) / (h - 1))."""
    if downsample == "stride":
        return x[..., ::rate, ::rate]

    def rows(n: int, out: int) -> list[int]:  # halves rounded up, as TF1's roundf for these non-negative values
        return [0] * out if out == 1 else [min(math.floor(i * (n - 1) / (out - 1) + 0.5), n - 1) for i in range(out)]

    height, width = x.shape[-2:]
    return x[..., rows(height, -(-height // rate)), :][..., rows(width, -(-width // rate))]


def naive_contextual_attention(f: Tensor, b: Tensor, mask: Tensor, ksize: int = 3, stride: int = 1, rate: int = 2,
                               fuse_k: int = 3, softmax_scale: float = 10.0,
                               downsample: str = "release") -> tuple[Tensor, Tensor]:
    """Per-sample loop; returns (output (B, C, H, W), offsets (B, 2, fh, fw))."""
    outputs, offsets = [], []
    height, width = f.shape[-2:]
    eye = torch.eye(fuse_k, dtype=f.dtype).view(1, 1, fuse_k, fuse_k)
    for n in range(f.shape[0]):
        fi, bi = f[n:n + 1], b[n:n + 1]
        mi = mask[n:n + 1] if mask.shape[0] > 1 else mask
        raw = _patches_as_kernels(bi, 2 * rate, rate * stride)  # (L, C, 2r, 2r)
        fs, bs, ms = (_downsample(x, rate, downsample) for x in (fi, bi, mi.to(f.dtype)))
        fh, fw = fs.shape[-2:]
        w = _patches_as_kernels(bs, ksize, stride)  # (L, C, k, k)
        bh, bw = _same(bs.shape[-2], ksize, stride)[0], _same(bs.shape[-1], ksize, stride)[0]
        mm = (_patches_as_kernels(ms, ksize, stride).mean(dim=(1, 2, 3)) == 0).to(f.dtype)  # (L,)
        norm = w.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt().clamp(min=1e-4)
        y = F.conv2d(F.pad(fs, (ksize // 2,) * 4), w / norm)  # (1, L, fh, fw)
        y = y.flatten(2).transpose(1, 2).reshape(1, 1, fh * fw, bh * bw)  # (fg, bg) score image
        if fuse_k > 1:
            y = F.conv2d(y, eye, padding=fuse_k // 2)
            y = y.view(fh, fw, bh, bw).permute(1, 0, 3, 2).reshape(1, 1, fh * fw, bh * bw)
            y = F.conv2d(y, eye, padding=fuse_k // 2)
            y = y.view(fw, fh, bw, bh).permute(1, 0, 3, 2)
        y = y.reshape(fh * fw, bh * bw) * mm
        y = torch.softmax(y * softmax_scale, dim=1) * mm
        best = y.argmax(dim=1).view(fh, fw)
        offsets.append(torch.stack([best // bw - torch.arange(fh).view(-1, 1), best % bw - torch.arange(fw)]))
        y = y.t().reshape(1, bh * bw, fh, fw)
        _, top, _ = _same(height, 2 * rate, rate)
        _, left, _ = _same(width, 2 * rate, rate)
        out = F.conv_transpose2d(y, raw, stride=rate) / 4.0
        outputs.append(out[..., top:top + height, left:left + width])
    return torch.cat(outputs), torch.stack(offsets)
