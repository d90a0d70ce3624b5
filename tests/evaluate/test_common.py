"""evaluate.common: the fine-tuning loss log, the shared runtime keys, temporary thread counts and dataset subsets."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pixelssl.evaluate.common import FinetuneRuntimeConfig, LossLog, threads
from pixelssl.evaluate.detection import DetectionConfig
from pixelssl.evaluate.segmentation import FinetuneConfig


def test_loss_log_averages_each_window_and_closes_on_the_last_step():
    log = LossLog(every=3, total=7, label="test")
    for step, value in enumerate([1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 5.0]):
        log.add(step, torch.tensor(value, requires_grad=True))
    assert log.history == [[3, 2.0], [6, 20.0], [7, 5.0]]


def test_both_fine_tuning_configs_carry_the_shared_runtime_keys():
    shared = {f.name for f in dataclasses.fields(FinetuneRuntimeConfig)}
    assert shared == {"device", "threads", "amp", "num_workers", "log_every"}
    for schema in (FinetuneConfig, DetectionConfig):
        assert shared <= {f.name for f in dataclasses.fields(schema)}


@pytest.mark.parametrize("count", [1, 2])
def test_threads_is_restored_after_the_block(count):
    before = torch.get_num_threads()
    with threads(count):
        assert torch.get_num_threads() == count
    assert torch.get_num_threads() == before
