"""Started by ``torchrun`` from ``test_distributed.py``: pre-train (or resume) in every process, then save this rank's
view of the run into ``OUT/rank<r>.pt``: the full method state (weights, teachers, queues, BN statistics), a
queue probe (a fresh queue fed rank-specific keys) and a SyncBatchNorm probe (``bn_probe_net`` on this rank's half
of ``bn_probe_batch()``: output, DDP-averaged gradients, running variance).

    torchrun --standalone --nproc_per_node 2 tests/train/dist_worker.py OUT new KEY=VALUE ...
    torchrun --standalone --nproc_per_node 2 tests/train/dist_worker.py OUT resume RUN_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from pixelssl.config import PretrainConfig, load_config
from pixelssl.models.queue import FeatureQueue
from pixelssl.train.distributed import convert_sync_batchnorm
from pixelssl.train.loop import pretrain


def bn_probe_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def bn_probe_batch() -> torch.Tensor:
    return torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def sync_bn_probe(rank: int, world_size: int) -> dict:
    net = convert_sync_batchnorm(bn_probe_net(), torch.device("cpu"))
    out = net(bn_probe_batch().chunk(world_size)[rank])
    out.square().mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    for grad in grads:
        dist.all_reduce(grad)
        grad /= world_size  # as DDP
    return {"out": out.detach(), "grads": grads, "running_var": net[1].running_var.clone(),
            "converted": type(net[1]).__name__}


def main() -> None:
    out, mode, *args = sys.argv[1:]
    dist.init_process_group("gloo")  # created here so it outlives pretrain() for the probe below
    if mode == "resume":
        result = pretrain(resume=args[0], overrides=args[1:])
    else:
        result = pretrain(load_config(PretrainConfig, overrides=args))
    rank = dist.get_rank()
    probe = FeatureQueue(dim=4, size=10)
    probe.enqueue(torch.full((3, 4), float(rank + 1)))  # 3 keys per rank, valued by rank
    torch.save({"state": result.method.state_dict(), "probe_keys": probe.keys.clone(), "probe_ptr": int(probe.ptr),
                "sync_bn": sync_bn_probe(rank, dist.get_world_size())}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
