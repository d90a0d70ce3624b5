"""TensorFlow 1's spatial conventions, which the DeepFill v1 release relies on: nearest resize with
``align_corners=True`` and 'SAME' padding; used by contextual attention and the generator's layers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


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


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow 'SAME' geometry along one axis: (output size, padding before, padding after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2
