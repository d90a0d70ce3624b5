"""A data-loader failure names its file: a worker killed by a signal (OOM killer, crashing decoder), or a Python
error while loading/augmenting one image; mid-run, the finished steps are checkpointed first (the messages' unit
tests: tests/data/test_worker_report.py)."""

from __future__ import annotations

import os
import re
import signal

import pytest
import torch

from pixelssl.config import PretrainConfig, load_config
from pixelssl.data import loader as loader_module
from pixelssl.data.loader import StepBatchSampler, build_pretrain_loader, build_two_view_dataset
from pixelssl.data.worker_report import reporting
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.errors import DataError
from pixelssl.train.loop import pretrain

BATCH, IMAGES = 4, 32
TINY = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=32",
        f"data.synthetic.num_images={IMAGES}", "data.synthetic.size=48", f"train.batch_size={BATCH}",
        "train.warmup_steps=1", "train.log_every=1", "train.tensorboard=false", "train.progress=false",
        "train.amp=fp32", "train.threads=1"]


class BrokenSource:
    """Random 48 px images named ``img_NNN.png``; one of them kills its process or raises while loading."""

    def __init__(self, bad_index: int, how: str) -> None:
        self.bad_index, self.how = bad_index, how

    def __len__(self) -> int:
        return IMAGES

    def describe(self, index: int) -> str:
        return f"img_{index:03d}.png"

    def load(self, index: int) -> torch.Tensor:
        if index == self.bad_index:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise MemoryError("cannot allocate 12 GB")  # not an UnreadableImage: no silent fallback
        return torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(index))


def _cfg(tmp_path, workers: int, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, "pixpro_r18_demo",
                       [*TINY, f"data.num_workers={workers}", f"run.output_dir={tmp_path}", *extra])


def _index_used_at(step: int) -> int:
    """The image index the sampler puts first in the batch of ``step`` (seed 0)."""
    batches = list(StepBatchSampler(IMAGES, BATCH, 0, 0, step + 1))
    return batches[step][0][1]


def _dataset(tmp_path, monkeypatch, bad_index: int, how: str):
    monkeypatch.setattr(loader_module, "build_image_source", lambda data_cfg: BrokenSource(bad_index, how))
    return build_two_view_dataset(_cfg(tmp_path, 1).data, seed=0)


@pytest.mark.parametrize("workers", [0, 1])
def test_python_error_in_loading_names_the_file(tmp_path, monkeypatch, workers):
    dataset = _dataset(tmp_path, monkeypatch, _index_used_at(1), "raise")
    loader = build_pretrain_loader(dataset, BATCH, 0, 0, 3, workers)
    with pytest.raises(DataError) as info:
        list(reporting(loader, dataset.tracker))
    if dataset.tracker is not None:
        dataset.tracker.cleanup()
    message = str(info.value)
    assert message.splitlines() == [message]  # one line, not a wrapped worker traceback
    assert message == f"img_{_index_used_at(1):03d}.png: MemoryError: cannot allocate 12 GB"


def test_killed_worker_is_reported_with_the_file_it_was_loading(tmp_path, monkeypatch):
    bad = _index_used_at(2)
    dataset = _dataset(tmp_path, monkeypatch, bad, "kill")
    loader = build_pretrain_loader(dataset, BATCH, 0, 0, 4, 1)
    seen = 0
    with pytest.raises(DataError, match=rf"DataLoader worker .* while loading img_{bad:03d}\.png"):
        for _ in reporting(loader, dataset.tracker):
            seen += 1
    assert seen <= 2  # batches the worker had queued but not yet sent die with it
    dataset.tracker.cleanup()


def test_worker_crash_mid_run_checkpoints_the_finished_steps(tmp_path, monkeypatch):
    # One worker keeps at most 4 batches in flight, so when it reaches step 5's batch, step 0 has been trained.
    bad = _index_used_at(5)
    assert bad not in {i for step in range(5) for _, i in list(StepBatchSampler(IMAGES, BATCH, 0, 0, 5))[step]}
    monkeypatch.setattr(loader_module, "build_image_source", lambda data_cfg: BrokenSource(bad, "kill"))
    cfg = _cfg(tmp_path, 1, "run.name=crash", "train.max_steps=8", "train.checkpoint_every=100")
    with pytest.raises(DataError, match=rf"img_{bad:03d}\.png; checkpoint written after step \d: .* --resume ") as info:
        pretrain(cfg)
    written = int(re.search(r"after step (\d)", str(info.value)).group(1))
    assert 1 <= written <= 5
    assert load_checkpoint(tmp_path / "crash" / "checkpoints" / "last.pt")["step"] == written
