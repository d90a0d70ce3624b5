"""pixelssl.dist in a single process: every collective is a no-op that hands back its input (the multi-process
behaviour is tested under torchrun in ``tests/train/test_distributed.py``)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pixelssl import dist


def test_single_process_helpers_change_nothing():
    keys = torch.randn(4, 3)
    assert dist.concat_all_gather(keys) is keys
    assert dist.all_reduce_mean(keys) is keys
    assert dist.all_gather_objects({"a": 1}) == [{"a": 1}]
    bn = nn.BatchNorm2d(3)
    bn.running_mean.fill_(0.5)
    dist.average_batchnorm_stats(bn)
    assert torch.equal(bn.running_mean, torch.full((3,), 0.5))
    dist.assert_replicas_match(bn, step=1)


def test_rank_world_without_a_group():
    assert not dist.is_distributed()
    assert dist.rank_world() == (0, 1)


def test_global_mean_divides_by_the_local_count_with_a_floor():
    total = torch.tensor(6.0)
    assert float(dist.global_mean(total, torch.tensor(3), floor=1.0)) == 2.0
    assert float(dist.global_mean(total, torch.tensor(0), floor=1.0)) == 6.0


def test_cpu_sync_batchnorm_shares_the_layer_and_is_plain_batchnorm_in_one_process():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    original = net[1]
    reference = copy.deepcopy(net)
    synced = dist.convert_sync_batchnorm(net, torch.device("cpu"))
    assert isinstance(synced[1], dist.CpuSyncBatchNorm) and isinstance(synced[1], dist.SYNCED_BATCHNORM)
    assert synced[1].weight is original.weight and synced[1].running_mean is original.running_mean
    assert set(synced.state_dict()) == set(reference.state_dict())  # checkpoints and exports keep their names
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(synced(x), reference(x))
    torch.testing.assert_close(synced[1].running_var, reference[1].running_var)
    with pytest.raises(ValueError, match="2D"):
        synced[1](torch.randn(4))
