"""Data-parallel training launched by ``torchrun``: one process per device, NCCL on CUDA, gloo on CPU.

    torchrun --nproc_per_node 4 -m pixelssl pretrain --config pixpro_r50 data.root=...

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT and every process joins the group
through ``env://``; nothing here reads node counts or host names, so torchrun's rendezvous flags work unchanged for
any number of nodes. ``train.batch_size`` is the **global** batch: rank r trains on the r-th contiguous shard of
every step's batch (``data.loader.StepBatchSampler``), which stays a function of (seed, step) so resume is exact.

What keeps the replicas identical: the same seed (so the same initial weights and queues), DDP's averaged
gradients (so the same optimiser steps and hence the same EMA teachers), queues fed by ``concat_all_gather`` (the
same keys on every rank), and BatchNorm statistics that are either synchronised (``model.sync_bn``) or averaged
across ranks before they are saved. ``assert_replicas_match`` checks that at every checkpoint. Those collectives
live in ``pixelssl.dist``; this module joins and leaves the process group, splits the global batch
(``plan_batches``, ``shard_batches``, ``shard_indices``) and wraps the model in DDP (``wrap`` for pre-training,
``wrap_for_finetuning`` for evaluation's fine-tuning): the one sharding of every loop.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from pixelssl.data.loader import StepBatchSampler, steps_per_epoch
from pixelssl.dist import convert_sync_batchnorm, rank_world
from pixelssl.errors import DataError, PixelSSLError

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


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when started directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device_name: str, key: str = "train.device") -> DistContext:
    """Join torchrun's process group (env:// rendezvous) when WORLD_SIZE > 1 and pick this process's device.

    ``device_name`` is the config value (auto | cpu | cuda | cuda:N). Under torchrun, CUDA means cuda:LOCAL_RANK
    (one process per GPU) with NCCL; CPU means gloo. A group the caller already created is reused, not destroyed.
    """
    from pixelssl.engine.runtime import resolve_device

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


@contextlib.contextmanager
def process_group(device_name: str, key: str = "train.device") -> Iterator[DistContext]:
    """``init`` on entry, ``shutdown`` on exit (without the barrier after an error, so torchrun stops the others)."""
    ctx = init(device_name, key)
    finished = False
    try:
        yield ctx
        finished = True
    finally:
        shutdown(ctx, wait=finished)


@dataclass(frozen=True)
class BatchPlan:
    """How a run's global batch meets its processes and its data."""

    global_batch: int  # train.batch_size: images per step over all processes
    local_batch: int  # images per step in each process
    steps_per_epoch: int  # full global batches in one pass over the training set


def plan_batches(num_items: int, global_batch: int, world_size: int = 1, min_per_process: int = 2,
                 key: str = "train.batch_size") -> BatchPlan:
    """The run-time checks of a global batch size (config ``key``), in one place (its bounds are the config's): the
    global batch splits into ``world_size`` equal per-process batches of at least ``min_per_process`` images (2
    where BatchNorm sees them), and the training set holds at least one batch."""
    from pixelssl.config import ConfigError

    if global_batch % world_size or global_batch // world_size < min_per_process:
        raise ConfigError(f"config key '{key}': {global_batch} is the global batch and must split into "
                          f"{world_size} equal per-process batches of at least {min_per_process} images")
    epoch = steps_per_epoch(num_items, global_batch)
    if epoch == 0:
        raise DataError(f"the training set has {num_items} images, fewer than one batch ({key}={global_batch})")
    return BatchPlan(global_batch, global_batch // world_size, epoch)


def shard_batches(num_items: int, global_batch: int, seed: int, total_steps: int, start_step: int = 0,
                  min_per_process: int = 1, key: str = "train.batch_size") -> StepBatchSampler:
    """This process's contiguous share of every step's global batch, a function of (seed, step) only, after
    ``plan_batches``' checks: the batches of pre-training, inpainting and fine-tuning."""
    rank, world = rank_world()
    plan_batches(num_items, global_batch, world, min_per_process, key)
    return StepBatchSampler(num_items, global_batch, seed, start_step, total_steps, rank, world)


def shard_indices(num_items: int) -> range:
    """This process's items of an evaluation pass (every world-th from its rank); the ranks' results are gathered."""
    rank, world = rank_world()
    return range(rank, num_items, world)


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


def wrap_for_finetuning(model: nn.Module, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """DistributedDataParallel around a fine-tuned model when several processes train it (the model otherwise),
    its BatchNorm synchronised over them if ``sync_batchnorm`` (torch's SyncBatchNorm on GPUs, gloo on CPU).
    Buffers are broadcast from rank 0 each forward, DDP's default: unsynchronised BatchNorm statistics then agree."""
    _, world = rank_world()
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_batchnorm:
        model = convert_sync_batchnorm(model, device)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
