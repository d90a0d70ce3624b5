"""Data-parallel training launched by ``torchrun``: one process per device, NCCL on CUDA, gloo on CPU.

    torchrun --nproc_per_node 4 -m pixelssl pretrain --config pixpro_r50 data.root=...

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT and every process joins the group
through ``env://``; nothing here reads node counts or host names, so torchrun's rendezvous flags work unchanged for
any number of nodes. ``train.batch_size`` is the **global** batch: rank r trains on the r-th contiguous shard of
every step's batch (``data.loader.StepBatchSampler``), which stays a function of (seed, step) so resume is exact.

What keeps the replicas identical: the same seed (so the same initial weights and queues), DDP's averaged
gradients (so the same optimiser steps and hence the same EMA teachers), queues fed by ``concat_all_gather`` (the
same keys on every rank), and BatchNorm statistics that are either synchronised (``model.sync_bn``) or averaged
across ranks before they are saved. ``assert_replicas_match`` checks that at every checkpoint.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pixelssl.errors import PixelSSLError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process created the process group (and destroys it in ``shutdown``)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    """Whether a process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when started directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device_name: str, key: str = "train.device") -> DistContext:
    """Join torchrun's process group (env:// rendezvous) when WORLD_SIZE > 1 and pick this process's device.

    ``device_name`` is the config value (auto | cpu | cuda | cuda:N). Under torchrun, CUDA means cuda:LOCAL_RANK
    (one process per GPU) with NCCL; CPU means gloo. A group the caller already created is reused, not destroyed.
    """
    from pixelssl.train.runtime import resolve_device

    device = resolve_device(device_name, key)
    already = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if already else launched_world_size()
    if world <= 1:
        return DistContext(device=device)
    if not dist.is_available():
        raise PixelSSLError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device_name.startswith("cuda:"):
            raise PixelSSLError(f"{key}={device_name} pins one GPU, but under torchrun every process uses "
                                f"cuda:LOCAL_RANK; use {key}=auto or {key}=cuda")
        if local_rank >= torch.cuda.device_count():
            raise PixelSSLError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are "
                                f"visible; start at most that many processes per node (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not already:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", device_id=device if device.type == "cuda" else None)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, owns_group=not already)


def shutdown(ctx: DistContext, wait: bool = True) -> None:
    """Leave the process group this module created (a no-op for single-process runs and borrowed groups).

    ``wait=False`` after an error: no barrier, so this process exits and torchrun stops the others, instead of
    waiting for peers that may be stuck in a collective.
    """
    if ctx.owns_group and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def local_batch_size(global_batch: int, world_size: int) -> int:
    """Images per process for a global ``train.batch_size``; it must split evenly, at least 2 per process."""
    from pixelssl.config import ConfigError

    if global_batch % world_size or global_batch // world_size < 2:
        raise ConfigError(f"config key 'train.batch_size': {global_batch} is the global batch and must split into "
                          f"{world_size} equal per-process batches of at least 2 images")
    return global_batch // world_size


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


def on_main(ctx: DistContext, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its (picklable) result to every rank.

    A ``PixelSSLError`` raised on rank 0 is raised on every rank with the same message, so a bad run directory
    stops all processes with one clear line instead of leaving the others waiting in a collective.
    """
    if not ctx.enabled:
        return fn()
    payload: list[Any] = [None]
    if ctx.is_main:
        try:
            payload = [("ok", fn())]
        except PixelSSLError as exc:
            payload = [("error", str(exc))]
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise PixelSSLError(value)
    return value


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


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


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed (the model itself otherwise).

    No ``find_unused_parameters`` (every method uses all its trainable parameters each step; frozen teachers are
    ignored by DDP), no per-step buffer broadcast (queues are gathered, SyncBN statistics agree, plain BN
    statistics are averaged before saving), gradients reduced straight into the buckets (``gradient_as_bucket_view``).
    """
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # Buffers are synced once at construction either way; newer torch renamed the per-forward switch.
    no_buffer_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in \
        inspect.signature(DistributedDataParallel.__init__).parameters else {"broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False,
                                   gradient_as_bucket_view=True, **no_buffer_sync)
