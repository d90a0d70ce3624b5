"""engine.distributed in one process: the global batch's checks and shards, and every wrapper a no-op without a group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelssl.config import ConfigError
from pixelssl.data.loader import StepBatchSampler
from pixelssl.engine import distributed
from pixelssl.errors import DataError


def test_global_batch_must_split_evenly_and_fit_the_data():
    assert distributed.plan_batches(1000, 256, 8) == distributed.BatchPlan(256, 32, 3)
    for batch, world in ((10, 4), (4, 4)):
        with pytest.raises(ConfigError, match="'train.batch_size'"):
            distributed.plan_batches(1000, batch, world)
    with pytest.raises(DataError, match=r"has 7 images, fewer than one batch \(train.batch_size=8\)"):
        distributed.plan_batches(7, 8, 2)


def test_one_process_takes_every_whole_batch_and_every_evaluation_item():
    sampler = distributed.shard_batches(20, 6, seed=3, total_steps=5, start_step=1)
    assert list(sampler) == list(StepBatchSampler(20, 6, 3, 1, 5))
    assert all(len(batch) == 6 for batch in sampler)
    assert distributed.shard_indices(7) == range(7)
    with pytest.raises(DataError, match=r"fewer than one batch \(finetune.batch_size=8\)"):
        distributed.shard_batches(5, 8, seed=0, total_steps=1, key="finetune.batch_size")


def test_without_torchrun_there_is_no_group_to_join(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.launched_world_size() == 1
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.launched_world_size() == 4
    monkeypatch.delenv("WORLD_SIZE")
    with distributed.process_group("cpu") as ctx:
        assert ctx == distributed.DistContext() and not ctx.enabled and ctx.is_main
        assert distributed.on_main(ctx, lambda: 42) == 42
        model = nn.Linear(2, 2)
        assert distributed.wrap(model, ctx) is model
        assert distributed.wrap_for_finetuning(model, torch.device("cpu"), sync_batchnorm=True) is model
        distributed.barrier(ctx)  # nothing to wait for
