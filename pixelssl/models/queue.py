"""A FIFO queue of L2-normalised key vectors used as InfoNCE negatives (MoCo, DenseCL, PixCon)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.dist import concat_all_gather


class FeatureQueue(nn.Module):
    """``size`` x ``dim`` ring buffer; state lives in buffers so it is checkpointed with the model."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size must be >= 1 (got {size})")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.compiler.disable
    def snapshot(self) -> Tensor:
        """A copy of the keys for this step's loss, which the step's own ``enqueue`` must not change.

        Run eagerly under ``torch.compile``: with ``keys.clone()`` inside the compiled forward, the compiled graph
        saved the buffer itself for backward, and the step's in-place enqueue then made backward fail (a version
        counter error) for every queue method.
        """
        return self.keys.clone()

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (N, dim) after the newest entries, wrapping around; N may exceed nothing but ``size``.

        Under torchrun the keys of every rank are gathered first (rank order = global batch order), so all ranks
        hold the same queue, as with one process and the global batch.
        """
        keys = concat_all_gather(keys.detach()).to(self.keys.dtype)
        n = keys.shape[0]
        if n > self.size:
            keys, n = keys[-self.size:], self.size
        start = int(self.ptr)
        end = start + n
        if end <= self.size:
            self.keys[start:end] = keys
        else:
            first = self.size - start
            self.keys[start:] = keys[:first]
            self.keys[: n - first] = keys[first:]
        self.ptr.fill_(end % self.size)
