"""Started by ``torchrun`` from ``test_distributed.py``: pre-train (or resume) in every process, then save this rank's
view of the run into ``OUT/rank<r>.pt``: the full method state (weights, teachers, queues, BN statistics), a
queue probe (a fresh queue fed rank-specific keys) and a SyncBatchNorm probe (``bn_probe_net`` on this rank's half
of ``bn_probe_batch()``: output, DDP-averaged gradients, running variance) and a loss probe (the count-normalised
dense losses on this rank's shard of ``loss_probe_inputs()``).

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
from pixelssl.dist import convert_sync_batchnorm
from pixelssl.models.queue import FeatureQueue
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


def loss_probe_inputs() -> dict[str, torch.Tensor]:
    """A global batch of 4 images whose halves hold very different numbers of valid pixels / weights."""
    g = torch.Generator().manual_seed(2)
    q = torch.nn.functional.normalize(torch.randn(4, 5, 6, generator=g, dtype=torch.float64), dim=1)
    k = torch.nn.functional.normalize(torch.randn(4, 5, 6, generator=g, dtype=torch.float64), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    positives = torch.rand(4, 6, 6, generator=g) < 0.3
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[2:, 1:] = False  # second half: one valid pixel per image
    weights = torch.rand(4, 6, generator=g, dtype=torch.float64)
    weights[:2] *= 10
    return {"q": q, "k": k, "queue": queue, "positives": positives, "valid": valid, "weights": weights}


def loss_probe(rank: int, world_size: int) -> dict:
    """This rank's losses and query gradients (divided by the world size, as DDP averages) on its shard."""
    from pixelssl.losses import dense_info_nce, pixel_info_nce

    shard = {name: t.chunk(world_size)[rank] if name != "queue" else t for name, t in loss_probe_inputs().items()}
    out = {}
    for name in ("pixel", "dense"):
        q = shard["q"].clone().requires_grad_()
        loss = (pixel_info_nce(q, shard["k"], shard["positives"], shard["valid"], 0.2, shard["queue"]) if name == "pixel"
                else dense_info_nce(q, shard["k"], shard["queue"], 0.2, shard["weights"]))
        loss.backward()
        out[name] = {"loss": loss.detach(), "grad": q.grad / world_size}
    return out


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
                "sync_bn": sync_bn_probe(rank, dist.get_world_size()),
                "losses": loss_probe(rank, dist.get_world_size())}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
