"""Collectives over the processes of a ``torch.distributed`` group: the bottom layer, with no knowledge of
training loops, so that losses, queues and evaluation use the same few functions.

Every function is a no-op (or returns its input) when no group with more than one process is active, so the same
code runs in a single process unchanged. Joining the group, wrapping a model in DDP and sharding the data are the
launcher's business (``engine.distributed``); what is here only talks to a group that already exists:

- ``is_distributed`` / ``rank_world``: whether a group of several processes is active, and this process's place;
- ``concat_all_gather`` / ``all_reduce_mean`` / ``global_mean`` / ``all_gather_objects``: tensors and objects
  from every rank (MoCo's key gathering, logged means, global-batch normalisation of data-dependent counts);
- BatchNorm across ranks: ``convert_sync_batchnorm`` (torch's SyncBatchNorm on GPUs, ``CpuSyncBatchNorm`` over
  gloo on CPU) and ``average_batchnorm_stats`` for plain BatchNorm before saving;
- ``assert_replicas_match``: the replicas' weights, teachers, queues and statistics agree.

May import: ``errors`` only (and torch).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pixelssl.errors import PixelSSLError


def is_distributed() -> bool:
    """Whether a process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when not distributed."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# --------------------------------------------------------------------------- collectives
@torch.no_grad()
def concat_all_gather(tensor: Tensor) -> Tensor:
    """Rows of ``tensor`` from every rank, concatenated in rank order (MoCo's ``concat_all_gather``; no gradient).

    Every rank must pass the same shape. Rank order is also the order of the global batch (rank r holds its r-th
    shard), so gathered keys line up exactly as in a single process. Returns ``tensor`` itself when not distributed.
    """
    if not is_distributed():
        return tensor
    tensor = tensor.contiguous()
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts)


def all_reduce_mean(values: Tensor) -> Tensor:
    """Mean over ranks of a tensor (a copy; the input itself is returned when not distributed)."""
    if not is_distributed():
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def global_mean(total: Tensor, count: Tensor, floor: float) -> Tensor:
    """``total / count`` for sums over this rank's shard, normalised by the count of the whole global batch.

    DDP averages gradients over ranks, so each rank divides by the global count / world size: the ranks' results
    then average to the single-process mean even when shards hold different numbers of terms (e.g. positives).
    """
    count = count.detach().to(total.dtype)
    if is_distributed():
        count = count.clone()
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return total / count.clamp(min=floor)


def all_gather_objects(obj: Any) -> list[Any]:
    """A picklable object from every rank, in rank order (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


# --------------------------------------------------------------------------- BatchNorm across ranks
class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the incoming gradients over ranks too (each rank's loss depends on the
    reduced value, so d(sum of losses)/d(local input) is the sum of every rank's gradient)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # noqa: ANN001 - autograd's ctx
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with statistics over every rank's batch for CPU tensors (gloo), where ``torch.nn.SyncBatchNorm``
    refuses to run (it and DDP accept GPU modules only). Per-channel sums and counts are all-reduced, then the
    squared deviations from the global mean (two passes, no cancellation), through an all-reduce whose backward
    all-reduces the gradient, as SyncBatchNorm's. Running statistics follow BatchNorm (unbiased variance); the
    parameter and buffer names are BatchNorm's, so checkpoints and exports do not change. Not distributed or in
    eval mode it is plain BatchNorm."""

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002 - torch's name
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        if not self.training or not is_distributed():
            return super().forward(input)
        self._check_input_dim(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        x = input.float()
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_full((1,), x.numel() // x.shape[1], dtype=torch.float64)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims).double(), count]))  # float64: exact counts at any scale
        n = sums[-1]
        mean = (sums[:-1] / n).float()
        centered = x - mean.view(shape)
        var = (_AllReduceSum.apply(centered.square().sum(dims).double()) / n).float()
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * float(n / (n - 1).clamp(min=1)), momentum)
        return out.to(input.dtype)


SYNCED_BATCHNORM = (nn.SyncBatchNorm, CpuSyncBatchNorm)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm1d/2d/3d as a synchronised one sharing its parameters and buffers: torch's SyncBatchNorm
    (native kernels, NCCL) on GPUs, ``CpuSyncBatchNorm`` (gloo) on CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SYNCED_BATCHNORM):
        converted = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                     module.track_running_stats)
        if module.affine:
            converted.weight = module.weight
            converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module


@torch.no_grad()
def average_batchnorm_stats(module: nn.Module) -> None:
    """Average plain BatchNorm running statistics over ranks (each rank saw its own shard); SyncBatchNorm layers
    already agree. Training uses batch statistics, so this changes only what is saved and exported."""
    if not is_distributed():
        return
    buffers = [t for m in module.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, SYNCED_BATCHNORM)
               and m.track_running_stats for t in (m.running_mean, m.running_var)]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for buf, value in zip(buffers, flat.split([b.numel() for b in buffers])):
        buf.copy_(value.view_as(buf))


@torch.no_grad()
def assert_replicas_match(module: nn.Module, step: int) -> None:
    """Raise on every rank when the ranks' weights, teachers, queues or BN statistics differ.

    Compares a per-tensor float64 sum and sum of squares of the full state dict across ranks; replicas are
    bit-identical by construction, so any difference is a bug (e.g. a rank-dependent update), not rounding.
    """
    if not is_distributed():
        return
    state = module.state_dict()
    keys = list(state)
    finger = torch.stack([torch.stack([v.double().sum(), v.double().square().sum()]) for v in state.values()])
    gathered = [torch.empty_like(finger) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, finger)
    for rank, other in enumerate(gathered[1:], start=1):
        differ = (other != gathered[0]).any(dim=1).nonzero().flatten().tolist()
        if differ:
            raise PixelSSLError(f"rank {rank} holds different values than rank 0 at step {step} in {len(differ)} "
                                f"tensor(s), e.g. '{keys[differ[0]]}'; the replicas went out of sync")
